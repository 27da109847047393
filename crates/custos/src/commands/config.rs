//! `custos config print-default`: every setting, generated from the command line
//! definition itself so it cannot fall out of date.

use clap::CommandFactory;

use crate::cli::{Cli, ConfigCommand};

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::PrintDefault => print!("{}", render_defaults()),
    }
    Ok(())
}

/// The settings of `custos serve` and `custos demo` (which include the global ones) as
/// an environment file: description, flag, and `CUSTOS_X=default`.
pub fn render_defaults() -> String {
    let cli = Cli::command();
    let mut out = String::from("# custos settings: each is a flag and an environment variable; flags win.\n");
    let mut seen = std::collections::HashSet::new();
    let commands = ["serve", "demo"].map(|name| cli.find_subcommand(name).expect("subcommand exists").clone());
    let args = cli.get_arguments().chain(commands.iter().flat_map(|c| c.get_arguments()));
    for arg in args {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy().into_owned();
        if !seen.insert(env.clone()) {
            continue;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        out.push_str(&format!("\n# {help}\n# flag: {flag}\n"));
        if default.is_empty() {
            out.push_str(&format!("# {env}=\n"));
        } else {
            out.push_str(&format!("{env}={}\n", default.join(",")));
        }
    }
    out
}
