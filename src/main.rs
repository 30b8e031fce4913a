//! The `globofs` binary: parses the command line and hands over to [`globofs::cli`].

fn main() {
    std::process::exit(globofs::cli::main());
}
