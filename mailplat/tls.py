"""
TLS server contexts from the configured certificate and key.
"""

from twisted.internet import ssl


def serverContextFactory(certificatePath, keyPath):
    """
    Build TLS options for a server from PEM files: the first certificate in
    C{certificatePath} is ours, the rest are its chain.  TLS 1.2 is the
    minimum (RFC 8996, RFC 8314).

    @rtype: L{twisted.internet.ssl.CertificateOptions}
    """
    with open(certificatePath, "rb") as f:
        certData = f.read()
    with open(keyPath, "rb") as f:
        keyData = f.read()
    certs = ssl.Certificate.loadPEM
    pems = [
        b"-----BEGIN CERTIFICATE-----" + part
        for part in certData.split(b"-----BEGIN CERTIFICATE-----")[1:]
    ]
    leaf = certs(pems[0])
    key = ssl.KeyPair.load(keyData, ssl.FILETYPE_PEM)
    chain = [certs(p).original for p in pems[1:]]
    return ssl.CertificateOptions(
        privateKey=key.original,
        certificate=leaf.original,
        extraCertChain=chain,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
