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
    static let defaultBaseURL = "https://graph.facebook.com/v21.0"

    static let usage = """
        usage: flows-fcgi register-key --phone-number-id ID --token-file FILE [--public-key FILE | --config FILE]
                                       [--base-url URL] [--dry-run]

        Uploads the public key to Meta: POST {base-url}/{ID}/whatsapp_business_encryption with the form field
        business_public_key=<PEM> and Authorization: Bearer <the token in FILE>.
          --phone-number-id ID  the WhatsApp phone number id (digits)
          --token-file FILE     a file whose first line is an access token with whatsapp_business_messaging
          --public-key FILE     the SPKI PEM public key to upload (else the public half of the configured key)
          --config FILE         settings as the responder reads them (PRIVATE_KEY_FILE, PASSPHRASE_FILE)
          --base-url URL        the Graph API base (default \(defaultBaseURL))
          --dry-run             print the request (without the token) instead of sending it
        Exit status: 0 when Meta accepts the key, 1 when it refuses or cannot be reached, 2 usage, 78 configuration.
        """

    /// Runs `register-key` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(
            arguments, command: "register-key",
            valued: ["--phone-number-id", "--token-file", "--public-key", "--config", "--base-url"],
            switches: ["--dry-run"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        let dryRun = parsed.has("--dry-run")
        guard parsed.positional.isEmpty else { return parsed.usageError("unexpected argument \(parsed.positional[0])") }
        guard let id = parsed["--phone-number-id"], !id.isEmpty, id.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return parsed.usageError("needs --phone-number-id ID (digits)")
        }
        guard dryRun || parsed["--token-file"] != nil else {
            return parsed.usageError("needs --token-file FILE (the token is never taken from the command line)")
        }
        var base = parsed["--base-url"] ?? defaultBaseURL
        while base.hasSuffix("/") { base.removeLast() }
        let key: PrivateKey
        let target: CallbackTarget
        var token = ""
        do {
            target = try CallbackTarget(url: "\(base)/\(id)/whatsapp_business_encryption", setting: "--base-url")
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            key = try operatorKey(publicKeyFile: parsed["--public-key"], settings: settings)
            if let file = parsed["--token-file"] {
                let text = String(decoding: try readFile(file, what: "token file"), as: UTF8.self)
                token = String(text.prefix { $0 != "\n" && $0 != "\r" }).trimmed
                guard !token.isEmpty else {
                    printError("the token file \(file) is empty")
                    return ExitStatus.config
                }
            }
        } catch {
            return configurationFailure(error)
        }
        let body = Array(("business_public_key=" + formEncode(key.publicKeyPEM)).utf8)
        if dryRun {
            let request = "POST \(target.url)\nContent-Type: application/x-www-form-urlencoded\n"
                + "Authorization: Bearer <the token in \(parsed["--token-file"] ?? "FILE")>\n\n"
                + String(decoding: body, as: UTF8.self) + "\n"
            writeAll(1, Array(request.utf8))
            return 0
        }
        let answer: HTTPResponse
        do {
            answer = try HTTPClient.send("POST", to: target, headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Bearer " + token),
            ], body: body, timeoutSeconds: 30)
        } catch {
            printError("uploading the public key failed: \(error.description)")
            return 1
        }
        let json = try? JSONParser.parse(answer.body)
        if (200..<300).contains(answer.status), json?["success"]?.boolValue != false {
            writeAll(1, Array(("uploaded the public key (SHA-256 fingerprint \(key.publicKeyFingerprint)) for phone "
                + "number id \(id)\n").utf8))
            return 0
        }
        let message = json?["error"]?["message"]?.stringValue
            ?? String(decoding: answer.body.prefix(300), as: UTF8.self)
        printError("Meta refused the public key (HTTP \(answer.status)): \(message)")
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
