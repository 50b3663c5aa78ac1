/// RFC 4180 CSV for operator exports, safe to open in a spreadsheet.
public enum CSV {
    /// One cell: neutralised against formula injection (a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`), and
    /// quoted when it holds `,`, `"`, CR or LF.
    public static func cell(_ value: String) -> String {
        var text = value
        if let first = text.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) {
            text = "'" + text
        }
        guard text.utf8.contains(where: { $0 == 0x2C || $0 == 0x22 || $0 == 0x0D || $0 == 0x0A }) else { return text }
        var quoted = "\""
        for character in text.unicodeScalars {
            if character == "\"" { quoted += "\"\"" } else { quoted.unicodeScalars.append(character) }
        }
        return quoted + "\""
    }

    /// One line of cells, CRLF-terminated.
    public static func line(_ cells: [String]) -> String {
        cells.map(cell).joined(separator: ",") + "\r\n"
    }
}
