#include "trainers/plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <set>

#include "core/error.h"

namespace posttrain {

void load_plugins(const std::vector<std::string>& paths) {
  static std::set<std::string> loaded;  // a plugin named twice registers once
  for (const auto& path : paths) {
    const std::string canonical = std::filesystem::exists(path) ? std::filesystem::canonical(path).string() : path;
    if (loaded.count(canonical)) continue;
    if (!std::filesystem::exists(path)) fail(path, "plugin library not found");
    void* handle = ::dlopen(canonical.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (handle == nullptr) fail(path, std::string("cannot load plugin: ") + ::dlerror());
    auto version = reinterpret_cast<int (*)()>(::dlsym(handle, "posttrain_plugin_api_version"));
    auto registration = reinterpret_cast<void (*)()>(::dlsym(handle, "posttrain_plugin_register"));
    if (version == nullptr || registration == nullptr)
      fail(path, "not a posttrain plugin (no POSTTRAIN_PLUGIN entry point; see trainers/plugin.h)");
    if (version() != POSTTRAIN_PLUGIN_API_VERSION)
      fail(path, "plugin built for API version " + std::to_string(version()) + ", this posttrain has version " +
                     std::to_string(POSTTRAIN_PLUGIN_API_VERSION) + "; rebuild it against this install");
    registration();
    loaded.insert(canonical);
  }
}

}  // namespace posttrain
