import CFlowsOpenSSL

/// Why a private key could not be loaded or used: names the file (when there is one) and the reason,
/// never any key material.
public struct KeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file the key came from, or `nil` for a key given inline (`PRIVATE_KEY`).
    public let file: String?
    /// What went wrong, in plain words.
    public let reason: String

    /// Creates an error for `file` (or an inline key when `nil`).
    public init(file: String?, reason: String) {
        self.file = file
        self.reason = reason
    }

    /// `private key FILE: reason`.
    public var description: String {
        "private key \(file ?? "from PRIVATE_KEY"): \(reason)"
    }
}

/// An RSA private key, parsed once per process and shared by every worker thread.
///
/// Owns its `EVP_PKEY` and frees it on deinit. OpenSSL keys are safe to use from several threads at once for
/// decryption, which is all the endpoint does with them after loading.
public final class PrivateKey: @unchecked Sendable {
    let pkey: OpaquePointer
    /// Where the key came from: a file path, or `PRIVATE_KEY`.
    public let source: String

    init(pkey: OpaquePointer, source: String) {
        self.pkey = pkey
        self.source = source
    }

    deinit { EVP_PKEY_free(pkey) }

    /// Loads a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`, also legacy `Proc-Type: 4,ENCRYPTED`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`, `BEGIN ENCRYPTED PRIVATE KEY`). The passphrase is used only when the key is encrypted.
    ///
    /// - Parameters:
    ///   - pem: the PEM text.
    ///   - passphrase: the passphrase for an encrypted key, if any.
    ///   - file: the file the text came from, for error messages (`nil` for an inline key).
    /// - Throws: `KeyError` naming the file and the reason: not PEM, encrypted without passphrase, wrong
    ///   passphrase, damaged (unreadable, or its numbers do not fit together), not RSA (naming its type), too small.
    public static func load(pem: [UInt8], passphrase: String?, file: String?) throws(KeyError) -> PrivateKey {
        let text = String(decoding: pem, as: UTF8.self)
        guard text.containsBytes("-----BEGIN ") else {
            throw KeyError(file: file, reason: "not a PEM file (no '-----BEGIN' line)")
        }
        guard text.containsBytes("PRIVATE KEY-----") else {
            throw KeyError(file: file, reason: "the PEM holds no private key (expected 'BEGIN RSA PRIVATE KEY', "
                + "'BEGIN PRIVATE KEY' or 'BEGIN ENCRYPTED PRIVATE KEY')")
        }
        let encrypted = text.containsBytes("BEGIN ENCRYPTED PRIVATE KEY") || text.containsBytes("Proc-Type: 4,ENCRYPTED")
        if encrypted, (passphrase ?? "").isEmpty {
            throw KeyError(file: file, reason: "the key is encrypted and no passphrase was given "
                + "(set PASSPHRASE or PASSPHRASE_FILE)")
        }
        clearOpenSSLErrors()
        var secret = Array((passphrase ?? "").utf8)
        defer {
            for i in secret.indices { secret[i] = 0 }
        }
        let loaded = pem.withUnsafeBufferPointer { text in
            secret.withUnsafeBufferPointer { pass in
                cflows_pem_read_rsa_private_key(text.baseAddress, text.count, pass.baseAddress, pass.count)
            }
        }
        guard let loaded else {
            let detail = drainOpenSSLErrors()
            if encrypted, detail.containsBytes("bad decrypt") || detail.containsBytes("maybe wrong password") {
                throw KeyError(file: file, reason: "wrong passphrase (the key could not be decrypted)")
            }
            if let other = otherKeyType(pem: pem, text: text, secret: secret) {
                throw KeyError(file: file, reason: "not an RSA key (\(other); WhatsApp Flows needs RSA-2048 or larger)")
            }
            if encrypted {
                throw KeyError(file: file, reason: "wrong passphrase or damaged key (OpenSSL: \(detail))")
            }
            throw KeyError(file: file, reason: "damaged or truncated PEM private key (OpenSSL: \(detail))")
        }
        let key = PrivateKey(pkey: loaded, source: file ?? "PRIVATE_KEY")
        guard EVP_PKEY_get_base_id(loaded) == EVP_PKEY_RSA else {
            throw KeyError(file: file, reason: "not an RSA key (WhatsApp Flows needs RSA-2048 or larger)")
        }
        let bits = EVP_PKEY_get_bits(loaded)
        guard bits >= 2048 else {
            throw KeyError(file: file, reason: "RSA key of \(bits) bits is too small (WhatsApp Flows needs 2048 or more)")
        }
        // A file damaged inside its base64 usually still parses into different numbers; such a key would fail every
        // request. The parts must fit together (tens of microseconds; CGI loads the key per request).
        guard cflows_rsa_parts_agree(loaded) != 0 else {
            throw KeyError(file: file, reason: "damaged RSA key: its parts do not fit together (n is not p*q, or d, "
                + "dP, dQ or qInv is wrong); restore the file from a backup or make a new key")
        }
        return key
    }

    /// The kind of a private key in `pem` that is not RSA, after the RSA-only read failed: from the PEM label
    /// (`BEGIN EC PRIVATE KEY`) or a PKCS#8 key's algorithm; `nil` when it is no readable key of another type.
    private static func otherKeyType(pem: [UInt8], text: String, secret: [UInt8]) -> String? {
        for (label, kind) in [("EC", "an EC key"), ("DSA", "a DSA key"), ("OPENSSH", "an OpenSSH-format key")]
        where text.containsBytes("-----BEGIN \(label) PRIVATE KEY-----") {
            return kind
        }
        let nid = pem.withUnsafeBufferPointer { text in
            secret.withUnsafeBufferPointer { pass in
                pass.withMemoryRebound(to: CChar.self) { pass in
                    cflows_pem_pkcs8_algorithm(text.baseAddress, text.count, pass.baseAddress, pass.count)
                }
            }
        }
        guard nid != NID_undef, nid != NID_rsaEncryption else { return nil }
        if nid == NID_X9_62_id_ecPublicKey { return "an EC key" }
        return OBJ_nid2sn(nid).map { "a PKCS#8 key of type \(String(cString: $0))" } ?? "a PKCS#8 key of another type"
    }

    /// Generates a new RSA key pair.
    public static func generate(bits: Int = 2048) throws(KeyError) -> PrivateKey {
        guard let pkey = cflows_rsa_generate(UInt32(bits)) else {
            throw KeyError(file: nil, reason: "key generation failed (OpenSSL: \(drainOpenSSLErrors()))")
        }
        return PrivateKey(pkey: pkey, source: "generated")
    }

    /// The size of the RSA modulus in bits.
    public var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }

    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), the form Meta's API takes.
    public var publicKeyPEM: String {
        let bytes = collectBIO { PEM_write_bio_PUBKEY($0, pkey) == 1 } ?? []
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The SHA-256 fingerprint of the public key's DER (SPKI), as lowercase hex: safe to print.
    public var publicKeyFingerprint: String {
        var der: UnsafeMutablePointer<UInt8>?
        let length = i2d_PUBKEY(pkey, &der)
        guard length > 0, let der else { return "" }
        defer { cflows_openssl_free(der) }
        return Hex.encode(Digest.sha256(UnsafeBufferPointer(start: der, count: Int(length))))
    }

    /// PEM forms the key can be written in.
    public enum PEMFormat: Sendable {
        /// `BEGIN RSA PRIVATE KEY`; encrypted with legacy DES-EDE3-CBC when a passphrase is given.
        case pkcs1
        /// `BEGIN PRIVATE KEY`, or `BEGIN ENCRYPTED PRIVATE KEY` (AES-256-CBC, PBKDF2) with a passphrase.
        case pkcs8
    }

    /// The private key as PEM, optionally encrypted with `passphrase`.
    public func privateKeyPEM(format: PEMFormat, passphrase: String? = nil) -> String {
        var secret = Array((passphrase ?? "").utf8)
        defer {
            for i in secret.indices { secret[i] = 0 }
        }
        let encrypt = !(passphrase ?? "").isEmpty
        let bytes = secret.withUnsafeMutableBufferPointer { pass in
            collectBIO { bio in
                switch format {
                case .pkcs1:
                    return PEM_write_bio_PrivateKey_traditional(
                        bio, pkey, encrypt ? EVP_des_ede3_cbc() : nil, encrypt ? pass.baseAddress : nil,
                        Int32(pass.count), nil, nil) == 1
                case .pkcs8:
                    if !encrypt { return PEM_write_bio_PrivateKey(bio, pkey, nil, nil, 0, nil, nil) == 1 }
                    return PEM_write_bio_PKCS8PrivateKey(
                        bio, pkey, EVP_aes_256_cbc(), UnsafeMutableRawPointer(pass.baseAddress)?
                            .assumingMemoryBound(to: CChar.self),
                        Int32(pass.count), nil, nil) == 1
                }
            }
        }
        return String(decoding: bytes ?? [], as: UTF8.self)
    }
}
