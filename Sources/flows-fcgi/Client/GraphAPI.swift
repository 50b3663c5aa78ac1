import FlowCore

/// What the commands that call Meta's Graph API (`register-key`, `upload-flow`) share: the base URL, the access
/// token read from a file (never from the command line, never printed), the request (or its description with
/// `--dry-run`) and Meta's error message.
enum GraphAPI {
    /// The Graph API base used when `--base-url` is not given.
    static let defaultBaseURL = "https://graph.facebook.com/v21.0"

    /// The options every Graph API command takes besides its own.
    static let valued: Set<String> = ["--token-file", "--config", "--base-url"]

    /// `--base-url` (or the default) without trailing slashes, followed by `path`, as a checked target.
    static func target(_ parsed: CommandArguments, path: String) throws(ConfigError) -> CallbackTarget {
        var base = parsed["--base-url"] ?? defaultBaseURL
        while base.hasSuffix("/") { base.removeLast() }
        return try CallbackTarget(url: base + path, setting: "--base-url")
    }

    /// The access token: the first line of `--token-file`, trimmed; `nil` with `--dry-run` and no file.
    /// - Throws: `ConfigError` when the file cannot be read or its first line is empty.
    static func token(_ parsed: CommandArguments) throws(ConfigError) -> String? {
        guard let file = parsed["--token-file"] else { return nil }
        let text = String(decoding: try readFile(file, what: "token file"), as: UTF8.self)
        let token = String(text.prefix { $0 != "\n" && $0 != "\r" }).trimmed
        guard !token.isEmpty else { throw ConfigError("the token file \(file) is empty") }
        return token
    }

    /// The value of `option` when it is a Graph API id (digits only), else `nil`.
    static func id(_ parsed: CommandArguments, _ option: String) -> String? {
        guard let id = parsed[option], !id.isEmpty, id.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return id
    }

    /// The usage error of a command run without `--token-file` and without `--dry-run`, else `nil`.
    static func missingToken(_ parsed: CommandArguments) -> Int32? {
        guard !parsed.has("--dry-run"), parsed["--token-file"] == nil else { return nil }
        return parsed.usageError("needs --token-file FILE (the token is never taken from the command line)")
    }

    /// Sends `body` to `target` with the bearer `token` (exit status 1 printed when it cannot be sent), or with
    /// `--dry-run` prints the request with `shownBody` and the token's file instead of the token, sending nothing.
    /// - Returns: the answer, or the exit status when nothing more is to be done.
    static func send(_ parsed: CommandArguments, to target: CallbackTarget, contentType: String, body: [UInt8],
                     shownBody: String, token: String?, what: String) -> Outcome {
        if parsed.has("--dry-run") {
            let request = "POST \(target.url)\nContent-Type: \(contentType)\n"
                + "Authorization: Bearer <the token in \(parsed["--token-file"] ?? "FILE")>\n\n" + shownBody + "\n"
            writeAll(1, Array(request.utf8))
            return .done(0)
        }
        do {
            return .answer(try HTTPClient.send("POST", to: target, headers: [
                ("Content-Type", contentType), ("Authorization", "Bearer " + (token ?? "")),
            ], body: body, timeoutSeconds: 30))
        } catch {
            printError("\(what) failed: \(error.description)")
            return .done(1)
        }
    }

    /// What `send` ended with: Meta's answer, or the command's exit status (a dry run, a request not sent).
    enum Outcome {
        case answer(HTTPResponse)
        case done(Int32)
    }

    /// Meta's `error.message` from an answer, else the start of its body.
    static func errorMessage(_ answer: HTTPResponse, json: JSONValue?) -> String {
        json?["error"]?["message"]?.stringValue ?? String(decoding: answer.body.prefix(300), as: UTF8.self)
    }
}

