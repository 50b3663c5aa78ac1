import FlowCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `flows-fcgi upload-flow NAME --flow-id ID`: uploads `NAME`'s Flow JSON from `FLOWS_DIR` as the Flow's JSON asset
/// (`POST {base}/{ID}/assets`, multipart `name=flow.json`, `asset_type=FLOW_JSON`, `file`) and prints Meta's
/// validation errors. The access token is read from a file and never printed.
enum UploadFlow {
    static let usage = """
        usage: flows-fcgi upload-flow NAME --flow-id ID --token-file FILE [--config FILE] [--base-url URL] [--dry-run]

        Uploads FLOWS_DIR/NAME.json (FLOWS_DIR: the setting, else the shipped flows/ folder) to Meta as the Flow JSON
        of Flow ID: POST {base-url}/{ID}/assets, multipart/form-data with name=flow.json, asset_type=FLOW_JSON and
        the file, Authorization: Bearer <the token in FILE>. Prints each validation error Meta reports.
          --flow-id ID          the Flow's id (digits; WhatsApp Manager > Flows, or the Flows API)
          --token-file FILE     a file whose first line is an access token with whatsapp_business_management
          --config FILE         settings as the responder reads them (FLOWS_DIR)
          --base-url URL        the Graph API base (default \(GraphAPI.defaultBaseURL))
          --dry-run             print the request (without the token or the file's bytes) instead of sending it
        Exit status: 0 when Meta accepts the Flow JSON with no validation error; 1 when it reports validation errors,
        refuses it or cannot be reached; 2 usage (an unknown flow name too); 78 configuration.
        """

    /// Runs `upload-flow` with `arguments`; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        guard let parsed = CommandArguments.parse(arguments, command: "upload-flow",
                                                  valued: GraphAPI.valued.union(["--flow-id"]),
                                                  switches: ["--dry-run"], usage: usage)
        else { return ExitStatus.usage }
        if parsed.help { return 0 }
        guard parsed.positional.count == 1 else {
            return parsed.usageError(parsed.positional.isEmpty ? "needs the flow's NAME (a file NAME.json in FLOWS_DIR)"
                : "unexpected argument \(parsed.positional[1])")
        }
        let name = parsed.positional[0]
        guard let id = GraphAPI.id(parsed, "--flow-id") else {
            return parsed.usageError("needs --flow-id ID (digits)")
        }
        if let status = GraphAPI.missingToken(parsed) { return status }
        let folder: String
        let target: CallbackTarget
        let token: String?
        do {
            let settings = try Settings(environment: currentEnvironment(), file: parsed["--config"],
                                        names: Configuration.allSettingNames)
            folder = try Configuration.flowsDirectory(settings)
            target = try GraphAPI.target(parsed, path: "/\(id)/assets")
            token = try GraphAPI.token(parsed)
        } catch {
            return configurationFailure(error)
        }
        let path = folder + "/" + name + ".json"
        guard isFlowName(name), access(path, F_OK) == 0 else {
            return parsed.usageError("no flow '\(name)' in \(folder) (flows there: \(flowNames(in: folder)))")
        }
        let bytes: [UInt8]
        do {
            bytes = try readFile(path, what: "Flow JSON")
            _ = try JSONParser.parse(bytes)
        } catch let error as JSONError {
            printError("\(path) is not JSON: \(error.description)")
            return 1
        } catch {
            return configurationFailure(error)
        }
        let form = MultipartForm([
            .field("name", "flow.json"), .field("asset_type", "FLOW_JSON"),
            .file("file", fileName: "flow.json", contentType: "application/json", bytes: bytes),
        ])
        let shown = "name=flow.json\nasset_type=FLOW_JSON\nfile=@\(path) (\(bytes.count) bytes)"
        let answer: HTTPResponse
        switch GraphAPI.send(parsed, to: target, contentType: form.contentType, body: form.body, shownBody: shown,
                             token: token, what: "uploading the Flow JSON") {
        case .answer(let response): answer = response
        case .done(let status): return status
        }
        let json = try? JSONParser.parse(answer.body)
        guard (200..<300).contains(answer.status), let json else {
            printError("Meta refused the Flow JSON (HTTP \(answer.status)): "
                + GraphAPI.errorMessage(answer, json: json))
            return 1
        }
        let errors = json["validation_errors"]?.arrayValue ?? []
        if !errors.isEmpty {
            var text = "Meta reported \(errors.count) validation error\(errors.count == 1 ? "" : "s") in \(path) "
                + "(flow \(id)); fix and upload again:\n"
            for error in errors { text += "  " + describe(error) + "\n" }
            writeAll(2, Array(text.utf8))
            return 1
        }
        guard json["success"]?.boolValue != false else {
            printError("Meta did not accept the Flow JSON (HTTP \(answer.status)): "
                + String(decoding: answer.body.prefix(300), as: UTF8.self))
            return 1
        }
        writeAll(1, Array("uploaded \(path) (\(bytes.count) bytes) as the Flow JSON of flow \(id)\n".utf8))
        return 0
    }

    /// One validation error: `ERROR_TYPE ERROR: message (line L, column C; at path)` with what Meta gave.
    static func describe(_ error: JSONValue) -> String {
        let text = { (key: String) -> String? in
            switch error[key] {
            case .string(let value)?: return value
            case .number(let value)?: return value
            default: return nil
            }
        }
        var head = [text("error_type"), text("error")].compactMap { $0 }.joined(separator: " ")
        if head.isEmpty { head = "error" }
        var place: [String] = []
        if let line = text("line_start") { place.append("line \(line)") }
        if let column = text("column_start") { place.append("column \(column)") }
        var location = place.joined(separator: ", ")
        let paths = (error["pointers"]?.arrayValue ?? []).compactMap { pointer -> String? in
            if case .string(let path)? = pointer["path"] { return path }
            return pointer.stringValue
        }
        if !paths.isEmpty { location += (location.isEmpty ? "" : "; ") + "at " + paths.joined(separator: ", ") }
        return head + ": " + (text("message") ?? "(no message)") + (location.isEmpty ? "" : " (\(location))")
    }

    /// A flow's name: `^[a-z0-9][a-z0-9_-]{0,63}$` (no dot: `x.rules.json` and `appointment.catalog.json` are
    /// companions, not flows).
    static func isFlowName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        let lowerOrDigit = { (b: UInt8) in (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        return lowerOrDigit(bytes[0]) && bytes.dropFirst().allSatisfy { lowerOrDigit($0) || $0 == 0x2D || $0 == 0x5F }
    }

    /// The flow names in `folder`, sorted, for a message.
    private static func flowNames(in folder: String) -> String {
        guard let directory = opendir(folder) else { return "none readable" }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if file.hasSuffix(".json"), isFlowName(String(file.dropLast(5))) { names.append(String(file.dropLast(5))) }
        }
        return names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
    }
}
