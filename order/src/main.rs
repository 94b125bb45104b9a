// The allocator: a service allocates and frees small buffers on every request and every round
// trip, which mimalloc does for less than glibc's malloc (docs/design/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shared::startup::main::<order::startup::Application>()
}
