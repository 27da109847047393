/// mimalloc instead of the system allocator: many small, short-lived allocations per
/// request from many threads are where glibc's malloc is slowest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    custos::run()
}
