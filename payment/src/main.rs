// The allocator: a service allocates and frees small buffers on every request and every
// round trip; glibc's malloc took about a sixth of the services' CPU in the benchmark profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shared::startup::main::<payment::startup::Application>()
}
