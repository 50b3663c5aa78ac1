import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi register-key`: uploads the endpoint's public key to Meta's Graph API for one phone number id
/// (`POST {base}/{ID}/whatsapp_business_encryption`, form field `business_public_key`). The access token is read
/// from a file and never printed.
enum RegisterKey {
    static let usage = """
        usage: flows-fcgi register-key --phone-number-id ID --token-file FILE [--public-key FILE | --config FILE]
                                       [--base-url URL] [--dry-run]

        Uploads the public key to Meta: POST {base-url}/{ID}/whatsapp_business_encryption with the form field
        business_public_key=<PEM> and Authorization: Bearer <the token in FILE>.
          --phone-number-id ID  the WhatsApp phone number id (digits)
          --token-file FILE     a file whose first line is an access token with whatsapp_business_messaging
          --public-key FILE     the SPKI PEM public key to upload (else the public half of the configured key)
          --config FILE         settings as the responder reads them (PRIVATE_KEY_FILE, PASSPHRASE_FILE)
          --base-url URL        the Graph API base (default \(GraphAPI.defaultBaseURL))
          --dry-run             print the request (without the token) instead of sending it
        Exit status: 0 when Meta accepts the key, 1 when it refuses or cannot be reached, 2 usage, 78 configuration.
        """

    /// Runs `register-key` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(
            arguments, command: "register-key", valued: GraphAPI.valued.union(["--phone-number-id", "--public-key"]),
            switches: ["--dry-run"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        guard parsed.positional.isEmpty else { return parsed.usageError("unexpected argument \(parsed.positional[0])") }
        guard let id = GraphAPI.id(parsed, "--phone-number-id") else {
            return parsed.usageError("needs --phone-number-id ID (digits)")
        }
        if let status = GraphAPI.missingToken(parsed) { return status }
        let key: PrivateKey
        let target: CallbackTarget
        let token: String?
        do {
            target = try GraphAPI.target(parsed, path: "/\(id)/whatsapp_business_encryption")
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            key = try operatorKey(publicKeyFile: parsed["--public-key"], settings: settings)
            token = try GraphAPI.token(parsed)
        } catch {
            return configurationFailure(error)
        }
        let body = Array(("business_public_key=" + formEncode(key.publicKeyPEM)).utf8)
        let answer: HTTPResponse
        switch GraphAPI.send(parsed, to: target, contentType: "application/x-www-form-urlencoded", body: body,
                             shownBody: String(decoding: body, as: UTF8.self), token: token,
                             what: "uploading the public key") {
        case .answer(let response): answer = response
        case .done(let status): return status
        }
        let json = try? JSONParser.parse(answer.body)
        if (200..<300).contains(answer.status), json?["success"]?.boolValue != false {
            writeAll(1, Array(("uploaded the public key (SHA-256 fingerprint \(key.publicKeyFingerprint)) for phone "
                + "number id \(id)\n").utf8))
            return 0
        }
        printError("Meta refused the public key (HTTP \(answer.status)): \(GraphAPI.errorMessage(answer, json: json))")
        return 1
    }

    /// `application/x-www-form-urlencoded`: unreserved characters as they are, space as `+`, the rest `%XX`.
    static func formEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                 UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: " "):
                out.append(UInt8(ascii: "+"))
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
