fn main() -> std::process::ExitCode {
    custos::run()
}
