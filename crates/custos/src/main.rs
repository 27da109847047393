/// mimalloc instead of the system allocator: many small, short-lived allocations per
/// request from many threads are where glibc's malloc is slowest. Built with `no_thp`:
/// it does not ask Linux for transparent huge pages, which kept 2 MiB pages resident
/// for small heaps (the server's peak RSS while sealing a 1 GiB evidence bundle fell
/// from 80–106 MiB to 54–78 MiB, `forensic verify`'s from 22 to 14 MiB); `main` then
/// shortens how long freed memory stays resident (`custos::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before any thread starts: see `custos::allocator`.
    custos::allocator::configure();
    custos::run()
}
