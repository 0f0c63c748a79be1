// tunnel-agent: see src/agent/cli.hpp for the command line.
#include "agent/cli.hpp"

int main(int argc, char** argv) {
  return tunnel::agent::run_cli(argc, argv);
}
