// A sandbox for untrusted code (hackathon plugin submissions): Debian's bubblewrap (bwrap) with
// every namespace unshared, so the child has no network (a new network namespace holds only an
// unconfigured loopback), sees its own process tree, and sees no file but the system's libraries,
// this executable's install tree and the paths it is given: read-only ones and one writable scratch
// folder (its HOME and TMPDIR; every other write fails). Paths in `hidden` are covered by an empty
// read-only tmpfs, in case they lie under a visible path.
#pragma once

#include <string>
#include <vector>

namespace posttrain {

struct SandboxSpec {
  std::vector<std::string> read_only;  // files or folders the child may read (at the same paths)
  std::string scratch;  // the one folder it may write (its HOME and working directory)
  std::vector<std::string> hidden;  // folders that must stay invisible even under a read-only path
};

// bwrap's command line up to the command it runs (ends with "--"). UserError when bwrap is not
// installed (scripts/install-deps.sh installs it).
std::vector<std::string> sandbox_wrapper(const SandboxSpec& spec);

}  // namespace posttrain
