/// The rules for text that names or identifies something (flow tokens, webhook ids and numbers, query parameters):
/// it never holds U+0000, which no such value needs and which other systems (C strings, logs, spreadsheets) cut at.
/// Free text (booking details, message texts) may hold it and is stored whole.
extension String {
    /// True when the text holds U+0000 (a NUL byte in its UTF-8).
    var containsNUL: Bool { utf8.contains(0) }
}

/// The flow token rules, the same for every flow and everywhere a token enters (a Flows request, an `nfm_reply`
/// webhook): not empty, at most `maxBytes` bytes of UTF-8, no U+0000.
public enum FlowToken {
    /// The longest flow token accepted, in bytes of UTF-8. WhatsApp's tokens are short; a business chooses its own
    /// when it sends a Flow message, and 1 KiB leaves room for a signed or structured one.
    public static let maxBytes = 1024

    /// Why `token` cannot be a flow token, or `nil`. The words never quote the token.
    public static func problem(_ token: String) -> String? {
        if token.isEmpty { return "flow_token is empty" }
        if token.utf8.count > maxBytes { return "flow_token is longer than \(maxBytes) bytes" }
        if token.containsNUL { return "flow_token contains a NUL character (U+0000)" }
        return nil
    }
}
