/// Standard base64 (RFC 4648 section 4, `+` and `/`, padded), and the URL-safe alphabet for JWTs.
public enum Base64 {
    private static let standard: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlSafe: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private static func table(_ alphabet: [UInt8]) -> [UInt8] {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }
    private static let standardDecode = table(standard)
    private static let urlSafeDecode = table(urlSafe)

    /// Encodes bytes as padded standard base64.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encodeBytes(bytes, alphabet: standard, pad: true), as: UTF8.self)
    }

    /// Encodes bytes as unpadded URL-safe base64 (as in JWTs).
    public static func encodeURLSafe(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encodeBytes(bytes, alphabet: urlSafe, pad: false), as: UTF8.self)
    }

    /// Encodes bytes as the bytes of padded standard base64.
    static func encodeBytes(_ bytes: [UInt8]) -> [UInt8] {
        encodeBytes(bytes, alphabet: standard, pad: true)
    }

    /// Decodes padded standard base64; `nil` for any other character, wrong padding or a bad length.
    public static func decode(_ text: String) -> [UInt8]? {
        if let decoded = text.utf8.withContiguousStorageIfAvailable({
            decodeBytes($0, table: standardDecode, requirePadding: true)
        }) {
            return decoded
        }
        return Array(text.utf8).withUnsafeBufferPointer { decodeBytes($0, table: standardDecode, requirePadding: true) }
    }

    /// Decodes URL-safe base64 with or without padding; `nil` when invalid.
    public static func decodeURLSafe(_ text: some StringProtocol) -> [UInt8]? {
        Array(text.utf8).withUnsafeBufferPointer { decodeBytes($0, table: urlSafeDecode, requirePadding: false) }
    }

    private static func encodeBytes(_ bytes: some Collection<UInt8>, alphabet: [UInt8], pad: Bool) -> [UInt8] {
        let input = Array(bytes)
        let full = input.count / 3
        let rest = input.count - full * 3
        let count = full * 4 + (rest == 0 ? 0 : (pad ? 4 : rest + 1))
        // Written through raw buffers: this runs on every answer (the sealed body) and every request's signature.
        return input.withUnsafeBufferPointer { input in
            alphabet.withUnsafeBufferPointer { alphabet in
                [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                    var o = 0
                    var i = 0
                    for _ in 0..<full {
                        let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        out[o] = alphabet[Int(n >> 18 & 63)]
                        out[o + 1] = alphabet[Int(n >> 12 & 63)]
                        out[o + 2] = alphabet[Int(n >> 6 & 63)]
                        out[o + 3] = alphabet[Int(n & 63)]
                        i += 3
                        o += 4
                    }
                    if rest > 0 {
                        var n = UInt32(input[i]) << 16
                        if rest == 2 { n |= UInt32(input[i + 1]) << 8 }
                        out[o] = alphabet[Int(n >> 18 & 63)]
                        out[o + 1] = alphabet[Int(n >> 12 & 63)]
                        o += 2
                        if rest == 2 {
                            out[o] = alphabet[Int(n >> 6 & 63)]
                            o += 1
                        } else if pad {
                            out[o] = UInt8(ascii: "=")
                            o += 1
                        }
                        if pad {
                            out[o] = UInt8(ascii: "=")
                            o += 1
                        }
                    }
                    initialized = o
                }
            }
        }
    }

    private static func decodeBytes(_ input: UnsafeBufferPointer<UInt8>, table: [UInt8], requirePadding: Bool)
        -> [UInt8]?
    {
        var end = input.count
        var padding = 0
        while end > 0, input[end - 1] == UInt8(ascii: "="), padding < 2 {
            end -= 1
            padding += 1
        }
        if requirePadding {
            guard input.count % 4 == 0 else { return nil }
        } else if padding > 0, input.count % 4 != 0 {
            return nil
        }
        let rest = end % 4
        if rest == 1 { return nil }
        if padding > 0, (end + padding) % 4 != 0 { return nil }
        let full = end / 4
        let count = full * 3 + (rest == 0 ? 0 : rest - 1)
        return table.withUnsafeBufferPointer { table -> [UInt8]? in
            var valid = true
            // Four characters at a time; a character outside the alphabet sets a high bit in `bad`.
            let out = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                var i = 0
                var o = 0
                var bad: UInt32 = 0
                for _ in 0..<full {
                    let a = UInt32(table[Int(input[i])]), b = UInt32(table[Int(input[i + 1])])
                    let c = UInt32(table[Int(input[i + 2])]), d = UInt32(table[Int(input[i + 3])])
                    bad |= a | b | c | d
                    let n = a << 18 | b << 12 | c << 6 | d
                    out[o] = UInt8(truncatingIfNeeded: n >> 16)
                    out[o + 1] = UInt8(truncatingIfNeeded: n >> 8)
                    out[o + 2] = UInt8(truncatingIfNeeded: n)
                    i += 4
                    o += 3
                }
                if rest > 0 {
                    let a = UInt32(table[Int(input[i])]), b = UInt32(table[Int(input[i + 1])])
                    let c = rest == 3 ? UInt32(table[Int(input[i + 2])]) : 0
                    bad |= a | b | c
                    let n = a << 18 | b << 12 | c << 6
                    out[o] = UInt8(truncatingIfNeeded: n >> 16)
                    o += 1
                    if rest == 3 {
                        out[o] = UInt8(truncatingIfNeeded: n >> 8)
                        o += 1
                    }
                    // Leftover bits must be zero (canonical encoding).
                    if n & (rest == 3 ? 0xFF : 0xFFFF) != 0 { bad |= 0x80 }
                }
                if bad & 0x80 != 0 { valid = false }
                initialized = o
            }
            return valid ? out : nil
        }
    }
}
