//! `kweb`: the server. See `kweb --help` and the crate docs.

fn main() -> std::process::ExitCode {
    kweb::main()
}
