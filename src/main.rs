fn main() -> std::process::ExitCode {
    mailsetup::main()
}
