import FlowCore
import FuzzSupport

/// Base64 fields: the strict standard decoder (envelope fields) and the URL-safe one (JWT parts of
/// `flow_token_signature`), and `FlowCrypto.decrypt` on an envelope made of three fuzzed fields.
///
/// Invariants: decode(encode(x)) == x for both alphabets; the decoders are canonical, so anything they accept
/// re-encodes to the same text (the URL-safe one without its optional padding); an envelope that decrypts (only a
/// real one can: the fuzzer cannot forge a GCM tag) holds a JSON object, a 16-byte key and a 16-byte IV.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBase64(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    require(Base64.decode(Base64.encode(bytes)) == bytes, "standard base64 does not round-trip")
    require(Base64.decodeURLSafe(Base64.encodeURLSafe(bytes)) == bytes, "URL-safe base64 does not round-trip")
    let text = String(decoding: bytes, as: UTF8.self)
    if let decoded = Base64.decode(text) {
        require(Base64.encode(decoded) == text, "the standard decoder accepted a non-canonical text")
    }
    if let decoded = Base64.decodeURLSafe(text) {
        var unpadded = Substring(text)
        while unpadded.hasSuffix("=") { unpadded.removeLast() }
        require(Base64.encodeURLSafe(decoded) == unpadded, "the URL-safe decoder accepted a non-canonical text")
    }
    _ = FlowTokenSignature.isValid(text, flowToken: "fuzz-token", secrets: [Array("fuzz-app-secret".utf8)])

    let fields = splitInput(bytes, separator: UInt8(ascii: "\n"), limit: 3).map { String(decoding: $0, as: UTF8.self) }
    if fields.count == 3 {
        let envelope = Envelope(encryptedFlowData: fields[0], encryptedAESKey: fields[1], initialVector: fields[2])
        if let request = try? FlowCrypto.decrypt(envelope, decryptors: Process.decryptors) {
            require(request.json.objectValue != nil && request.aesKey.count == 16 && request.iv.count == 16,
                    "a decrypted request that is not a JSON object with a 16-byte key and IV")
        }
    }
    return 0
}

/// What the target sets up once per process.
private enum Process {
    /// The pkcs8 test key.
    nonisolated(unsafe) static let decryptors: [OAEPDecryptor] = {
        do {
            let pem = try readFile(FuzzPaths.fixtures + "/keys/pkcs8.pem", what: "test key")
            return [OAEPDecryptor(key: try PrivateKey.load(pem: pem, passphrase: nil, file: "pkcs8.pem"))]
        } catch {
            fatalError("cannot load the test key: \(error)")
        }
    }()
}

runLibFuzzer(fuzzBase64)
