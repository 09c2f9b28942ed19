"""
TLS server contexts from the configured certificate and key.
"""

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twisted.internet import ssl


def serverContextFactory(certificatePath, keyPath):
    """
    Build TLS options for a server from PEM files: the first certificate in
    C{certificatePath} is ours, the rest are its chain.  TLS 1.2 is the
    minimum (RFC 8996, RFC 8314).

    @rtype: L{twisted.internet.ssl.CertificateOptions}
    """
    return serverContextFactoryFromPEM(*readPEM(certificatePath, keyPath))


def readPEM(certificatePath, keyPath):
    """
    I{blocking}.  @return: the bytes of the certificate and key files.
    """
    with open(certificatePath, "rb") as f:
        certificate = f.read()
    with open(keyPath, "rb") as f:
        key = f.read()
    return certificate, key


def serverContextFactoryFromPEM(certificatePEM, keyPEM):
    """
    L{serverContextFactory} from the files' contents (a separate SMTP
    process gets them from its parent: the key may be readable by root
    only).
    """
    certs = x509.load_pem_x509_certificates(certificatePEM)
    key = load_pem_private_key(keyPEM, password=None)
    return ssl.CertificateOptions(
        # pyOpenSSL takes cryptography's objects directly (its own X509 and
        # PKey wrappers are deprecated).
        privateKey=key,
        certificate=certs[0],
        extraCertChain=certs[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
