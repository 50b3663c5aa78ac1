import FlowCore
import FuzzSupport

/// PEM loading: `PrivateKey.load` on fuzzed PEM text. The first byte chooses the passphrase: odd bytes give the
/// test keys' passphrase (`test-pass`), even ones none.
///
/// Invariants: loading either throws a `KeyError` with a reason or gives an RSA key of at least 2048 bits whose
/// public half has a fingerprint and which opens what its public half seals (RSA-OAEP round trip); a refusal never
/// quotes the PEM's base64 (no key material in messages).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPEM(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    guard let first = bytes.first else { return 0 }
    let pem = Array(bytes.dropFirst())
    let passphrase = first & 1 == 1 ? "test-pass" : nil
    do {
        let key = try PrivateKey.load(pem: pem, passphrase: passphrase, file: "fuzz.pem")
        require(key.bits >= 2048, "a key of \(key.bits) bits was accepted")
        require(key.publicKeyFingerprint.utf8.count == 64, "a loaded key has no public key fingerprint")
        // A loaded key works: it opens what its public half seals (a damaged key that still parsed would not).
        let secret = Array(bytes.prefix(16)) + [UInt8](repeating: 0x5A, count: max(0, 16 - bytes.count))
        require(key.oaepEncrypt(secret).flatMap(key.oaepDecrypt) == secret, "a loaded key does not open its own seal")
    } catch {
        require(!error.reason.isEmpty && error.file == "fuzz.pem", "a key error without a reason or file")
        require(!quotesKeyMaterial(error.description, pem), "a key error quotes the PEM: \(error.description)")
    }
    return 0
}

/// True when `message` holds 20 base64 characters in a row that also appear in `pem` (key material).
private func quotesKeyMaterial(_ message: String, _ pem: [UInt8]) -> Bool {
    func isBase64(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
    }
    let width = 20
    guard pem.count >= width else { return false }
    for run in Array(message.utf8).split(whereSeparator: { !isBase64($0) }) where run.count >= width {
        let run = Array(run)
        for start in 0...(run.count - width) {
            let window = run[start..<(start + width)]
            if (0...(pem.count - width)).contains(where: { pem[$0..<($0 + width)].elementsEqual(window) }) {
                return true
            }
        }
    }
    return false
}

runLibFuzzer(fuzzPEM)
