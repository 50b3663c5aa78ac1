import CFlowsOpenSSL

/// Why a request could not be decrypted. Every case is answered with HTTP 421.
public enum DecryptionFailure: Error, Sendable, Equatable {
    /// RSA-OAEP unwrapping failed under every configured key.
    case keyUnwrapFailed
    /// The unwrapped AES key is not 16, 24 or 32 bytes.
    case badKeyLength(Int)
    /// The IV is not 16 bytes.
    case badIVLength(Int)
    /// A base64 field inside the envelope is not valid base64.
    case badBase64(field: String)
    /// The ciphertext is shorter than the GCM tag.
    case ciphertextTooShort
    /// The GCM tag did not verify.
    case tagMismatch
    /// The clear text is not a UTF-8 JSON object.
    case notJSONObject(String)
}

extension PrivateKey {
    /// RSA-OAEP decryption with SHA-256 as OAEP and MGF1 hash and an empty label.
    /// `nil` when it fails (wrong key, damaged ciphertext).
    public func oaepDecrypt(_ ciphertext: [UInt8]) -> [UInt8]? {
        oaep(ciphertext, init: EVP_PKEY_decrypt_init, run: EVP_PKEY_decrypt)
    }

    /// RSA-OAEP encryption with the public half (SHA-256 OAEP and MGF1), as WhatsApp clients do.
    public func oaepEncrypt(_ plaintext: [UInt8]) -> [UInt8]? {
        oaep(plaintext, init: EVP_PKEY_encrypt_init, run: EVP_PKEY_encrypt)
    }

    /// One OAEP operation (`init` + `run` are the decrypt or the encrypt pair) with a fresh context.
    private func oaep(
        _ input: [UInt8],
        init initialise: (OpaquePointer?) -> Int32,
        run: (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Int>?, UnsafePointer<UInt8>?, Int) -> Int32
    ) -> [UInt8]? {
        guard let ctx = EVP_PKEY_CTX_new(pkey, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: Int(EVP_PKEY_get_size(pkey)))
        var outLength = out.count
        guard initialise(ctx) == 1, setOAEP(ctx), run(ctx, &out, &outLength, input, input.count) == 1 else {
            clearOpenSSLErrors()
            return nil
        }
        out.removeSubrange(outLength...)
        return out
    }

    fileprivate func setOAEP(_ ctx: OpaquePointer) -> Bool {
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1
            && EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1
            && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1
    }
}

/// RSA-OAEP-SHA256 decryption with one private key whose `EVP_PKEY_CTX` is created and configured once and then
/// reused for every request (saving about 3 us per request). Not thread-safe: each worker thread owns its own.
public final class OAEPDecryptor {
    /// The key it decrypts with.
    public let key: PrivateKey
    private let ctx: OpaquePointer?
    private let size: Int

    /// A decryptor for `key` (falls back to a fresh context per call if the setup fails).
    public init(key: PrivateKey) {
        self.key = key
        size = Int(EVP_PKEY_get_size(key.pkey))
        var ctx = EVP_PKEY_CTX_new(key.pkey, nil)
        if let made = ctx, !(EVP_PKEY_decrypt_init(made) == 1 && key.setOAEP(made)) {
            EVP_PKEY_CTX_free(made)
            clearOpenSSLErrors()
            ctx = nil
        }
        self.ctx = ctx
    }

    deinit { EVP_PKEY_CTX_free(ctx) }

    /// The plaintext, or `nil` when it does not decrypt (wrong key, damaged ciphertext).
    public func decrypt(_ ciphertext: [UInt8]) -> [UInt8]? {
        guard let ctx else { return key.oaepDecrypt(ciphertext) }
        var out = [UInt8](repeating: 0, count: size)
        var outLength = size
        guard EVP_PKEY_decrypt(ctx, &out, &outLength, ciphertext, ciphertext.count) == 1 else {
            clearOpenSSLErrors()
            return nil
        }
        out.removeSubrange(outLength...)
        return out
    }
}

/// AES-GCM with a 16-byte IV and the 16-byte tag appended to the ciphertext, no AAD (the Flows scheme).
public enum AESGCM {
    /// Length of the authentication tag appended to the ciphertext.
    public static let tagLength = 16

    /// The ciphers fetched once: `EVP_aes_128_gcm()` and the like fetch the implementation again on every init.
    private final class Fetched: @unchecked Sendable {
        let aes128 = EVP_CIPHER_fetch(nil, "AES-128-GCM", nil) ?? EVP_aes_128_gcm()
        let aes192 = EVP_CIPHER_fetch(nil, "AES-192-GCM", nil) ?? EVP_aes_192_gcm()
        let aes256 = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) ?? EVP_aes_256_gcm()
    }
    private static let fetched = Fetched()

    private static func cipher(forKeyLength length: Int) -> OpaquePointer? {
        switch length {
        case 16: return fetched.aes128
        case 24: return fetched.aes192
        case 32: return fetched.aes256
        default: return nil
        }
    }

    /// Decrypts `ciphertext || tag`, in `contexts` when given (a worker's, reused for every request).
    public static func open(_ sealed: [UInt8], key: [UInt8], iv: [UInt8],
                            contexts: AESGCMContexts? = nil) throws(DecryptionFailure) -> [UInt8] {
        guard let cipher = cipher(forKeyLength: key.count) else { throw .badKeyLength(key.count) }
        guard iv.count == 16 else { throw .badIVLength(iv.count) }
        guard sealed.count >= tagLength else { throw .ciphertextTooShort }
        let (ctx, fresh) = try context(contexts?.decryption(cipher))
        defer { if fresh { EVP_CIPHER_CTX_free(ctx) } }
        let bodyLength = sealed.count - tagLength
        var tag = Array(sealed[bodyLength...])
        var out = [UInt8](repeating: 0, count: bodyLength + 16)
        var outLength: Int32 = 0
        var finalLength: Int32 = 0
        let ok = EVP_DecryptInit_ex(ctx, fresh ? cipher : nil, nil, nil, nil) == 1
            && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(iv.count), nil) == 1
            && EVP_DecryptInit_ex(ctx, nil, nil, key, iv) == 1
            && sealed.withUnsafeBufferPointer { EVP_DecryptUpdate(ctx, &out, &outLength, $0.baseAddress, Int32(bodyLength)) } == 1
            && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagLength), &tag) == 1
            && out.withUnsafeMutableBufferPointer {
                EVP_DecryptFinal_ex(ctx, $0.baseAddress! + Int(outLength), &finalLength)
            } == 1
        guard ok else {
            clearOpenSSLErrors()
            throw .tagMismatch
        }
        out.removeSubrange(Int(outLength + finalLength)...)
        return out
    }

    /// Encrypts and returns `ciphertext || tag`, in `contexts` when given (a worker's, reused for every request).
    public static func seal(_ plaintext: [UInt8], key: [UInt8], iv: [UInt8],
                            contexts: AESGCMContexts? = nil) throws(DecryptionFailure) -> [UInt8] {
        guard let cipher = cipher(forKeyLength: key.count) else { throw .badKeyLength(key.count) }
        guard iv.count == 16 else { throw .badIVLength(iv.count) }
        let (ctx, fresh) = try context(contexts?.encryption(cipher))
        defer { if fresh { EVP_CIPHER_CTX_free(ctx) } }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16 + tagLength)
        var outLength: Int32 = 0
        var finalLength: Int32 = 0
        let ok = EVP_EncryptInit_ex(ctx, fresh ? cipher : nil, nil, nil, nil) == 1
            && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(iv.count), nil) == 1
            && EVP_EncryptInit_ex(ctx, nil, nil, key, iv) == 1
            && EVP_EncryptUpdate(ctx, &out, &outLength, plaintext, Int32(plaintext.count)) == 1
            && out.withUnsafeMutableBufferPointer {
                EVP_EncryptFinal_ex(ctx, $0.baseAddress! + Int(outLength), &finalLength)
            } == 1
        guard ok else {
            clearOpenSSLErrors()
            throw .tagMismatch
        }
        let bodyLength = Int(outLength + finalLength)
        let tagOK = out.withUnsafeMutableBufferPointer {
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagLength), $0.baseAddress! + bodyLength)
        }
        guard tagOK == 1 else {
            clearOpenSSLErrors()
            throw .tagMismatch
        }
        out.removeSubrange((bodyLength + tagLength)...)
        return out
    }
}

extension AESGCM {
    /// `reused` (already set up for the right cipher and direction), or a new context the caller frees.
    fileprivate static func context(_ reused: OpaquePointer?) throws(DecryptionFailure)
        -> (ctx: OpaquePointer, fresh: Bool)
    {
        if let reused { return (reused, false) }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .tagMismatch }
        return (ctx, true)
    }
}

/// One worker thread's AES-GCM contexts, one for opening requests and one for sealing answers, set up for the
/// cipher once and then only re-keyed: a fresh `EVP_CIPHER_CTX` per operation costs two allocations and the
/// provider's context setup (about 5,000 instructions per request). Not thread-safe: each worker owns its own.
public final class AESGCMContexts {
    private var decryptCtx: OpaquePointer?
    private var encryptCtx: OpaquePointer?
    private var decryptCipher: OpaquePointer?
    private var encryptCipher: OpaquePointer?

    /// Contexts made on first use.
    public init() {}

    deinit {
        EVP_CIPHER_CTX_free(decryptCtx)
        EVP_CIPHER_CTX_free(encryptCtx)
    }

    /// The decryption context, set up for `cipher` (nil when it cannot be made: the caller uses a fresh one).
    fileprivate func decryption(_ cipher: OpaquePointer?) -> OpaquePointer? {
        prepared(&decryptCtx, &decryptCipher, cipher, encrypt: 0)
    }

    /// The encryption context, set up for `cipher`.
    fileprivate func encryption(_ cipher: OpaquePointer?) -> OpaquePointer? {
        prepared(&encryptCtx, &encryptCipher, cipher, encrypt: 1)
    }

    private func prepared(_ ctx: inout OpaquePointer?, _ current: inout OpaquePointer?, _ cipher: OpaquePointer?,
                          encrypt: Int32) -> OpaquePointer? {
        if let ctx, current == cipher { return ctx }
        if ctx == nil { ctx = EVP_CIPHER_CTX_new() }
        guard let made = ctx, EVP_CipherInit_ex(made, cipher, nil, nil, nil, encrypt) == 1 else {
            clearOpenSSLErrors()
            current = nil
            return nil
        }
        current = cipher
        return made
    }
}

/// SHA-256 and HMAC-SHA256.
public enum Digest {
    /// SHA-256 fetched once: `EVP_sha256()` makes every digest fetch the implementation again.
    private final class Fetched: @unchecked Sendable {
        let sha256 = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()
    }
    private static let fetched = Fetched()

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = EVP_Digest(bytes.baseAddress, bytes.count, &out, &length, fetched.sha256, nil)
        return out
    }

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBufferPointer { sha256($0) }
    }

    /// HMAC-SHA256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = key.withUnsafeBufferPointer { k in
            HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), message.baseAddress, message.count, &out, &length)
        }
        return out
    }

    /// HMAC-SHA256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        message.withUnsafeBufferPointer { hmacSHA256(key: key, message: $0) }
    }

    /// A comparison of `count` bytes at two addresses: 0 when they are equal.
    public typealias Comparison = @convention(c) (UnsafeRawPointer?, UnsafeRawPointer?, Int) -> Int32

    /// OpenSSL's `CRYPTO_memcmp`, which reads every byte whatever they hold (no early exit), the comparison
    /// `constantTimeEqual` uses.
    public static let constantTimeComparison: Comparison = CRYPTO_memcmp

    /// Compares two byte strings in time that depends only on their lengths: equal lengths are handed whole to
    /// `compare` (`constantTimeComparison`; a parameter so a test can watch what it is given).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8],
                                         compare: Comparison = constantTimeComparison) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in compare(x.baseAddress, y.baseAddress, x.count) == 0 } }
    }

    /// Cryptographically random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        precondition(RAND_bytes(&out, Int32(count)) == 1, "RAND_bytes failed")
        return out
    }
}

/// HMAC-SHA256 under one key, keyed once and reused for every message (about 0.8 us less per request than a
/// one-shot `HMAC()`, which fetches the digest and MAC each time). Not thread-safe: each worker thread owns its own.
public final class HMACSHA256 {
    private let key: [UInt8]
    private let ctx: OpaquePointer?

    /// A MAC under `key` (falls back to one-shot `HMAC()` if the context cannot be made, e.g. for an empty key).
    public init(key: [UInt8]) {
        self.key = key
        ctx = key.isEmpty ? nil : key.withUnsafeBufferPointer { cflows_hmac_sha256_new($0.baseAddress, $0.count) }
        if ctx == nil { clearOpenSSLErrors() }
    }

    deinit { EVP_MAC_CTX_free(ctx) }

    /// HMAC-SHA256 of `message`.
    public func authenticate(_ message: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard let ctx else { return Digest.hmacSHA256(key: key, message: message) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 0
        guard EVP_MAC_init(ctx, nil, 0, nil) == 1, EVP_MAC_update(ctx, message.baseAddress, message.count) == 1,
            EVP_MAC_final(ctx, &out, &length, 32) == 1, length == 32
        else {
            clearOpenSSLErrors()
            return Digest.hmacSHA256(key: key, message: message)
        }
        return out
    }

    /// HMAC-SHA256 of `message`.
    public func authenticate(_ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBufferPointer { authenticate($0) }
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Bytes as lowercase hex.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Hex (either case) to bytes; `nil` when not an even number of hex digits.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        Array(text.utf8).withUnsafeBufferPointer { decode($0) }
    }

    /// Hex digits (either case) to bytes; `nil` when not an even number of hex digits.
    public static func decode(_ chars: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
