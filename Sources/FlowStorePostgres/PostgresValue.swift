/// A value sent as a statement parameter or read from a result column.
///
/// Parameters travel in PostgreSQL's text format and the server converts them to the column's type. Results are
/// read by column type: `int2`, `int4`, `int8`, `oid` and `bool` (1 or 0, as SQLite stores flags) become `int8`,
/// `float4` and `float8` become `float8`, everything else (`text`, `numeric`, timestamps, ...) is `text`.
public enum PostgresValue: Sendable, Equatable {
    /// `NULL`.
    case null
    /// A 64-bit integer (`bigint`).
    case int8(Int64)
    /// A double-precision number (avoid for money: use integer minor units).
    case float8(Double)
    /// UTF-8 text of any length; U+0000 is refused (PostgreSQL text cannot hold it) rather than cut short.
    case text(String)

    /// The integer, when this is one.
    public var int: Int64? {
        if case .int8(let value) = self { return value }
        return nil
    }

    /// The text, when this is text.
    public var string: String? {
        if case .text(let value) = self { return value }
        return nil
    }
}

/// A statement prepared on a connection under `name` (`PostgresConnection.prepare`): executed many times with new
/// parameters, prepared again by the connection itself after it reconnects.
public struct PostgresStatement: Sendable, Equatable {
    /// The server-side name, unique per connection.
    public let name: String
    /// The SQL, with `$1`, `$2`, ... placeholders.
    public let sql: String
}
