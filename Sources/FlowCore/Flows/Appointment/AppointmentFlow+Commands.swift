/// The appointment flow's operator commands: `bookings` and `cancel-booking`.
extension AppointmentFlow {
    /// `flows-fcgi bookings` and `flows-fcgi cancel-booking`.
    public static let commands = [bookingsCommand, cancelCommand]

    static let bookingsCommand = FlowCommand(
        name: "bookings", summary: "list appointment bookings by start time (--all includes cancelled ones)",
        usage: """
            usage: flows-fcgi bookings [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--all] [--csv] [--config FILE]

            Lists appointment bookings by start time, from --from through --to (dates in the catalog's time zone);
            --all includes cancelled ones, --csv writes CSV. Prints personal data: keep the output away from logs.
            Reads the database only (DATABASE_URL); exit status 1 when there is none, 2 for a bad argument.
            """,
        valued: ["--from", "--to"], switches: ["--all", "--csv"], access: .readOnly
    ) { parsed throws(CommandArguments.Problem) in
        if let extra = parsed.positional.first { throw .init(message: "unexpected argument \(extra)") }
        let from = try parsed.date("--from"), to = try parsed.date("--to")
        let all = parsed.has("--all"), csv = parsed.has("--csv")
        return { database, _ in
            let list = try AppointmentStore.list(database: database, from: from, through: to, includeCancelled: all)
            let header = ["id", "date", "time", "department", "location", "status", "name", "email", "phone"]
            let rows = list.map { [String($0.id), $0.date, $0.time, $0.department, $0.location, $0.status.rawValue,
                                   $0.name, $0.email, $0.phone] }
            return .done(FlowCommand.table([header] + rows, csv: csv))
        }
    }

    static let cancelCommand = FlowCommand(
        name: "cancel-booking", summary: "cancel booking ID; its seat becomes free again",
        usage: """
            usage: flows-fcgi cancel-booking ID [--config FILE]

            Cancels booking ID (see flows-fcgi bookings); its seat becomes free again. Exit status 1 when there is no
            such booking, it was already cancelled or there is no database.
            """,
        access: .existing
    ) { parsed throws(CommandArguments.Problem) in
        guard parsed.positional.count == 1, let id = Int64(parsed.positional[0]), id > 0 else {
            throw .init(message: "needs one booking id, a whole number (see flows-fcgi bookings)")
        }
        return { database, now in
            switch try AppointmentStore.cancel(database: database, id: id, now: now) {
            case .cancelled(let booking):
                return .done("cancelled booking \(id) (\(booking.date) \(booking.time), \(booking.location)); "
                    + "the seat is free again\n")
            case .alreadyCancelled:
                return .failed("booking \(id) was already cancelled")
            case .notFound:
                return .failed("no booking \(id)")
            }
        }
    }
}
