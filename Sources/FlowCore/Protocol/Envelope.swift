#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The encrypted request body: three base64 strings in a JSON object (unknown members ignored).
public struct Envelope: Sendable, Equatable {
    /// `encrypted_flow_data`: AES-GCM ciphertext with the 16-byte tag appended.
    public let encryptedFlowData: String
    /// `encrypted_aes_key`: the AES key, RSA-OAEP-SHA256 encrypted to our public key.
    public let encryptedAESKey: String
    /// `initial_vector`: the 16-byte IV.
    public let initialVector: String

    /// An envelope from its three fields.
    public init(encryptedFlowData: String, encryptedAESKey: String, initialVector: String) {
        self.encryptedFlowData = encryptedFlowData
        self.encryptedAESKey = encryptedAESKey
        self.initialVector = initialVector
    }

    /// Parses the raw body; `nil` when it is not a JSON object with the three string members.
    public static func parse(_ body: [UInt8]) -> Envelope? {
        if let envelope = body.withUnsafeBufferPointer({ parsePlain($0) }) { return envelope }
        guard let value = try? JSONParser.parse(body),
            let data = value["encrypted_flow_data"]?.stringValue,
            let key = value["encrypted_aes_key"]?.stringValue,
            let iv = value["initial_vector"]?.stringValue
        else { return nil }
        return Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)
    }

    /// The common case without building a JSON value: an object whose members are all strings of printable
    /// ASCII without escapes (what WhatsApp sends), with distinct names. `nil` for anything else, which then takes
    /// the full parser, so both paths accept and reject exactly the same bodies.
    private static func parsePlain(_ body: UnsafeBufferPointer<UInt8>) -> Envelope? {
        var i = 0
        func skipWhitespace() {
            while i < body.count, body[i] == 0x20 || body[i] == 0x09 || body[i] == 0x0A || body[i] == 0x0D { i += 1 }
        }
        /// A plain string at `i` (opening quote), as the range between the quotes.
        func plainString() -> Range<Int>? {
            guard i < body.count, body[i] == UInt8(ascii: "\"") else { return nil }
            let base = body.baseAddress!
            let start = i + 1
            let end = body.count
            var j = start
            while j < end {
                let b = base[j]
                if b == UInt8(ascii: "\"") {
                    i = j + 1
                    return start..<j
                }
                // Printable ASCII only (0x20...0x7E), and no escape.
                if b &- 0x20 > 0x5E || b == UInt8(ascii: "\\") { return nil }
                j += 1
            }
            return nil
        }
        func equals(_ range: Range<Int>, _ name: StaticString) -> Bool {
            range.count == name.utf8CodeUnitCount
                && memcmp(body.baseAddress! + range.lowerBound, name.utf8Start, range.count) == 0
        }
        skipWhitespace()
        guard i < body.count, body[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var names: [Range<Int>] = []
        var data: Range<Int>?, key: Range<Int>?, iv: Range<Int>?
        skipWhitespace()
        if i < body.count, body[i] == UInt8(ascii: "}") { return nil }
        while true {
            skipWhitespace()
            guard let name = plainString() else { return nil }
            skipWhitespace()
            guard i < body.count, body[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skipWhitespace()
            guard let value = plainString() else { return nil }
            for earlier in names where earlier.count == name.count
                && memcmp(body.baseAddress! + earlier.lowerBound, body.baseAddress! + name.lowerBound, name.count) == 0
            {
                return nil  // a duplicate name: the full parser rejects it
            }
            names.append(name)
            if equals(name, "encrypted_flow_data") {
                data = value
            } else if equals(name, "encrypted_aes_key") {
                key = value
            } else if equals(name, "initial_vector") {
                iv = value
            }
            skipWhitespace()
            guard i < body.count else { return nil }
            if body[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard body[i] == UInt8(ascii: "}") else { return nil }
            i += 1
            break
        }
        skipWhitespace()
        guard i == body.count, let data, let key, let iv else { return nil }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: body[range]), as: UTF8.self)
        }
        return Envelope(encryptedFlowData: text(data), encryptedAESKey: text(key), initialVector: text(iv))
    }

    /// The envelope as a JSON body.
    public var body: [UInt8] {
        JSONValue.object([
            "encrypted_flow_data": .string(encryptedFlowData),
            "encrypted_aes_key": .string(encryptedAESKey),
            "initial_vector": .string(initialVector),
        ]).serialized
    }
}

/// A decrypted request and the AES key and IV its answer must be sealed with.
public struct DecryptedRequest: Sendable {
    /// The clear-text request JSON (an object).
    public let json: JSONValue
    /// The exact clear-text bytes.
    public let clearText: [UInt8]
    /// The AES key unwrapped from the envelope.
    public let aesKey: [UInt8]
    /// The request's IV.
    public let iv: [UInt8]
    /// The key that unwrapped the AES key (which of the configured keys this client uses).
    public let keyIndex: Int

    /// Seals an answer: AES-GCM with the same key and the bit-inverted IV, base64 of ciphertext and tag.
    public func seal(_ plaintext: [UInt8]) throws(DecryptionFailure) -> String {
        try FlowCrypto.sealAnswer(plaintext, key: aesKey, requestIV: iv)
    }

    /// `seal` as the bytes of the base64 text (the response body), without a String in between, in a worker's
    /// reused `contexts`.
    func sealBytes(_ plaintext: [UInt8], contexts: AESGCMContexts? = nil) throws(DecryptionFailure) -> [UInt8] {
        Base64.encodeBytes(try AESGCM.seal(plaintext, key: aesKey, iv: FlowCrypto.invert(iv), contexts: contexts))
    }
}

/// The Flows encryption scheme (spec section 2).
public enum FlowCrypto {
    /// The answer IV: every bit of the request IV inverted (not reversed).
    public static func invert(_ iv: [UInt8]) -> [UInt8] { iv.map { ~$0 } }

    /// Decrypts an envelope with the first of `keys` (newest first) that unwraps its AES key.
    public static func decrypt(_ envelope: Envelope, keys: [PrivateKey]) throws(DecryptionFailure) -> DecryptedRequest {
        try decrypt(envelope, decryptors: keys.map { OAEPDecryptor(key: $0) })
    }

    /// Decrypts an envelope with the first of `decryptors` (the configured keys, newest first, as set up by one
    /// worker thread) that unwraps its AES key, in the worker's AES-GCM `contexts` when given.
    public static func decrypt(_ envelope: Envelope, decryptors: [OAEPDecryptor],
                               contexts: AESGCMContexts? = nil) throws(DecryptionFailure) -> DecryptedRequest
    {
        guard let wrappedKey = Base64.decode(envelope.encryptedAESKey) else {
            throw .badBase64(field: "encrypted_aes_key")
        }
        guard let iv = Base64.decode(envelope.initialVector) else { throw .badBase64(field: "initial_vector") }
        guard let sealed = Base64.decode(envelope.encryptedFlowData) else {
            throw .badBase64(field: "encrypted_flow_data")
        }
        guard iv.count == 16 else { throw .badIVLength(iv.count) }
        var unwrapped: (key: [UInt8], index: Int)?
        for (index, decryptor) in decryptors.enumerated() {
            if let aesKey = decryptor.decrypt(wrappedKey) {
                unwrapped = (aesKey, index)
                break
            }
        }
        guard let unwrapped else { throw .keyUnwrapFailed }
        // WhatsApp uses AES-128: any other key length is refused, as the issue requires.
        guard unwrapped.key.count == 16 else { throw .badKeyLength(unwrapped.key.count) }
        let clear = try AESGCM.open(sealed, key: unwrapped.key, iv: iv, contexts: contexts)
        guard let json = try? JSONParser.parse(clear), json.objectValue != nil else {
            throw .notJSONObject("the decrypted request is not a UTF-8 JSON object")
        }
        return DecryptedRequest(json: json, clearText: clear, aesKey: unwrapped.key, iv: iv, keyIndex: unwrapped.index)
    }

    /// Seals an answer with `key` and the inverted `requestIV`, as base64.
    public static func sealAnswer(_ plaintext: [UInt8], key: [UInt8], requestIV: [UInt8]) throws(DecryptionFailure) -> String {
        Base64.encode(try AESGCM.seal(plaintext, key: key, iv: invert(requestIV)))
    }

    /// Builds an envelope the way a WhatsApp client does (for tests and the probe): a random AES-128 key and IV,
    /// the key wrapped for `publicKey`.
    public static func encryptRequest(_ clearText: [UInt8], for publicKey: PrivateKey)
        -> (envelope: Envelope, aesKey: [UInt8], iv: [UInt8])
    {
        let aesKey = Digest.randomBytes(16)
        let iv = Digest.randomBytes(16)
        let wrapped = publicKey.oaepEncrypt(aesKey) ?? []
        let sealed = (try? AESGCM.seal(clearText, key: aesKey, iv: iv)) ?? []
        return (Envelope(encryptedFlowData: Base64.encode(sealed), encryptedAESKey: Base64.encode(wrapped),
                         initialVector: Base64.encode(iv)), aesKey, iv)
    }

    /// Opens an answer sealed by `sealAnswer` (for tests and the probe).
    public static func openAnswer(_ base64: String, key: [UInt8], requestIV: [UInt8]) throws(DecryptionFailure) -> [UInt8] {
        guard let sealed = Base64.decode(base64) else { throw .badBase64(field: "answer") }
        return try AESGCM.open(sealed, key: key, iv: invert(requestIV))
    }
}
