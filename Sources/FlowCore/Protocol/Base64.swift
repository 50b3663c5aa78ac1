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
        var out: [UInt8] = []
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= input.count {
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = input.count - i
        if rest > 0 {
            var n = UInt32(input[i]) << 16
            if rest == 2 { n |= UInt32(input[i + 1]) << 8 }
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            if rest == 2 { out.append(alphabet[Int(n >> 6 & 63)]) } else if pad { out.append(UInt8(ascii: "=")) }
            if pad { out.append(UInt8(ascii: "=")) }
        }
        return out
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
        var out: [UInt8] = []
        out.reserveCapacity(end / 4 * 3 + 2)
        var acc: UInt32 = 0
        var bits = 0
        for i in 0..<end {
            let v = table[Int(input[i])]
            if v == 0xFF { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero (canonical encoding).
        if bits > 0, acc & ((1 << UInt32(bits)) - 1) != 0 { return nil }
        return out
    }
}
