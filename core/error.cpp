#include "core/error.h"

namespace posttrain {

void fail(const std::string& where, const std::string& what) { throw UserError(where + ": " + what); }

}  // namespace posttrain
