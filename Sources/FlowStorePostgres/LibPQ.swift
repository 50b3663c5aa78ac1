import CFlowsPostgres

/// libpq's functions, loaded from libpq.so.5 once per process, the first time a connection is made or a URI parsed
/// (the library is not linked: see Sources/CFlowsPostgres/shim.h). The table is filled by the header's inline
/// `cflows_pq_load`, compiled into this file: change this file too when the header's list of functions changes,
/// or an incremental build keeps the old loader (the new functions then stay unset).
struct LibPQ: @unchecked Sendable {
    /// The functions, by libpq's own names (`pq.PQexec(...)`).
    let pq: cflows_pq

    /// The library, or why it could not be loaded.
    static let shared: Result<LibPQ, PostgresError> = {
        let table = UnsafeMutablePointer<cflows_pq>.allocate(capacity: 1)
        defer { table.deallocate() }
        if let failure = cflows_pq_load(table) {
            return .failure(PostgresError(.invalidConfiguration, message: "cannot load libpq: "
                + "\(String(cString: failure)) (Debian's libpq5 package)", context: "loading libpq"))
        }
        return .success(LibPQ(pq: table.pointee))
    }()

    /// The functions, or the reason they are missing.
    static func load() throws(PostgresError) -> cflows_pq { try shared.get().pq }
}
