import CFlowsOpenSSL

extension PrivateKey {
    /// Loads an SPKI PEM public key (`BEGIN PUBLIC KEY`, the form uploaded to Meta) to encrypt requests to it, as a
    /// WhatsApp client does (the probe). The result holds no private half: it encrypts and fingerprints only.
    ///
    /// - Throws: `KeyError` naming the file and the reason: not PEM, no public key, damaged, not RSA.
    public static func loadPublicKey(pem: [UInt8], file: String?) throws(KeyError) -> PrivateKey {
        guard String(decoding: pem, as: UTF8.self).containsBytes("-----BEGIN PUBLIC KEY-----") else {
            throw KeyError(file: file, reason: "not an SPKI PEM public key (expected a '-----BEGIN PUBLIC KEY' line)")
        }
        clearOpenSSLErrors()
        let loaded: OpaquePointer? = try withMemoryBIO(pem) { bio throws(KeyError) in
            PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let loaded else {
            throw KeyError(file: file, reason: "damaged PEM public key (OpenSSL: \(drainOpenSSLErrors()))")
        }
        let key = PrivateKey(pkey: loaded, source: file ?? "public key")
        guard EVP_PKEY_get_base_id(loaded) == EVP_PKEY_RSA else {
            throw KeyError(file: file, reason: "not an RSA public key (WhatsApp Flows uses RSA)")
        }
        return key
    }
}
