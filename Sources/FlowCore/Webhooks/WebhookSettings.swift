/// The webhook receiver's and read API's settings: `VERIFY_TOKEN`, `API_TOKEN`, `WEBHOOK_MAX_BODY_BYTES`.
public struct WebhookSettings: Sendable {
    /// The setting names read here (listed in `Configuration.coreSettingNames`).
    public static let settingNames = ["VERIFY_TOKEN", "API_TOKEN", "WEBHOOK_MAX_BODY_BYTES", "CALLBACK_URL"]

    /// The shortest `API_TOKEN` accepted (a bearer token guessable by brute force protects nothing).
    public static let minimumAPITokenLength = 16

    /// The token Meta's verification handshake must present; `nil` refuses every handshake (403).
    public let verifyToken: String?
    /// The read API's bearer token; `nil` disables the read API (404).
    public let apiToken: String?
    /// Webhook POST bodies above this many bytes get 413.
    public let maxBodyBytes: Int
    /// Where confirmed completions are forwarded (`CALLBACK_URL`), if anywhere.
    public let callback: CallbackTarget?

    /// Reads and validates the settings.
    /// - Throws: `ConfigError` naming the setting (never its value when it is a secret).
    public init(settings: Settings) throws(ConfigError) {
        verifyToken = settings["VERIFY_TOKEN"]
        if let token = verifyToken, token.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            throw ConfigError(setting: "VERIFY_TOKEN", value: token, "contains control characters (a line break or tab "
                + "pasted with it?): Meta sends the token exactly as typed in the webhook settings")
        }
        if let token = settings["API_TOKEN"] {
            guard token.utf8.count >= WebhookSettings.minimumAPITokenLength else {
                throw ConfigError("API_TOKEN is shorter than \(WebhookSettings.minimumAPITokenLength) characters: "
                    + "use a long random token (e.g. openssl rand -hex 32)")
            }
            guard token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ConfigError("API_TOKEN contains spaces or characters other than printable ASCII")
            }
            apiToken = token
        } else {
            apiToken = nil
        }
        maxBodyBytes = try settings.integer("WEBHOOK_MAX_BODY_BYTES", default: 4 << 20, range: 1024...(64 << 20))
        callback = try settings["CALLBACK_URL"].map { url throws(ConfigError) in try CallbackTarget(url: url) }
    }
}
