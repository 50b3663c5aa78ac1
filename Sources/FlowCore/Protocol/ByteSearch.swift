/// Substring search by UTF-8 bytes.
///
/// The standard library's `contains(_:)` and `firstRange(of:)` with a string argument live in `_StringProcessing`,
/// whose code (about 0.25 MiB, with the regex parser laid out next to it) then becomes resident in every process
/// that calls them once, at startup (Flow JSON references, PEM markers) or per request (`..` in an email address).
/// These compare bytes, which for the ASCII needles used here is the same answer (and for a needle followed by a
/// combining mark, the stricter one: `..` is found even where the second dot carries an accent).
extension StringProtocol {
    /// The range of the first occurrence of `needle`'s UTF-8 bytes, `nil` when there is none (an empty needle is
    /// found at the start).
    public func firstByteRange(of needle: String) -> Range<String.Index>? {
        let bytes = utf8
        let pattern = needle.utf8
        guard let head = pattern.first else { return startIndex..<startIndex }
        var from = bytes.startIndex
        while let start = bytes[from...].firstIndex(of: head) {
            var end = start
            var matched = true
            for byte in pattern {
                guard end < bytes.endIndex, bytes[end] == byte else {
                    matched = false
                    break
                }
                bytes.formIndex(after: &end)
            }
            if matched { return start..<end }
            from = bytes.index(after: start)
        }
        return nil
    }

    /// True when `needle`'s UTF-8 bytes occur in the text.
    public func containsBytes(_ needle: String) -> Bool {
        firstByteRange(of: needle) != nil
    }
}
