//! Records the git commit this build came from, for `custos_build_info` and logs.

fn main() {
    let commit = std::env::var("CUSTOS_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let output = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    println!("cargo:rustc-env=CUSTOS_BUILD_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
    println!("cargo:rerun-if-env-changed=CUSTOS_COMMIT");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
