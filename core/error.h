// Errors a user can fix (bad input, bad config, missing file): one clear line, exit code 2.
#pragma once

#include <stdexcept>
#include <string>

namespace posttrain {

// Thrown for problems in what the user gave us. The message names where (file, line, key) and what.
// apps/ catches it, prints "posttrain: error: <message>" and exits with kExitUserError.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr int kExitUserError = 2;

// Throws UserError("<where>: <what>").
[[noreturn]] void fail(const std::string& where, const std::string& what);

}  // namespace posttrain
