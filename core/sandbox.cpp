#include "core/sandbox.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

std::string find_bwrap() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && fs::exists(fs::path(dir) / "bwrap")) return (fs::path(dir) / "bwrap").string();
  throw UserError(
      "the sandbox needs bubblewrap (bwrap), which is not installed: apt-get install bubblewrap "
      "(scripts/install-deps.sh does)");
}

}  // namespace

std::vector<std::string> sandbox_wrapper(const SandboxSpec& spec) {
  std::vector<std::string> w{find_bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"};
  // The system's programs and libraries (merged /usr on Debian 12: /lib, /bin are links into it),
  // the dynamic loader's configuration and the alternatives BLAS is chosen through.
  for (const std::string path : {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/ld.so.conf",
                                 "/etc/ld.so.conf.d", "/etc/alternatives", "/sys/devices/system/cpu"})
    w.insert(w.end(), {"--ro-bind-try", path, path});
  w.insert(w.end(), {"--proc", "/proc", "--dev", "/dev"});
  // This executable's install tree (bin/ and the lib/ its RUNPATH names).
  const fs::path self = fs::read_symlink("/proc/self/exe");
  const std::string tree = self.parent_path().parent_path().string();
  w.insert(w.end(), {"--ro-bind", tree, tree});
  for (const auto& path : spec.read_only) {
    const std::string absolute = fs::absolute(path).lexically_normal().string();
    w.insert(w.end(), {"--ro-bind", absolute, absolute});
  }
  const std::string scratch = fs::absolute(spec.scratch).lexically_normal().string();
  w.insert(w.end(), {"--bind", scratch, scratch, "--chdir", scratch, "--setenv", "HOME", scratch, "--setenv",
                     "TMPDIR", scratch, "--setenv", "POSTTRAIN_CACHE", scratch + "/cache"});
  for (const auto& path : spec.hidden) {
    const std::string absolute = fs::absolute(path).lexically_normal().string();
    w.insert(w.end(), {"--tmpfs", absolute, "--remount-ro", absolute});
  }
  // Everything but the scratch folder is read-only, the root's own tmpfs (where bwrap made the
  // mount points) included: a write anywhere else fails rather than landing in a private copy.
  w.insert(w.end(), {"--remount-ro", "/", "--"});
  return w;
}

}  // namespace posttrain
