// Chat templates posttrain ships, compiled into the library from models/chat_templates/*.jinja (so
// an installed binary needs no data files; CMakeLists.txt generates the definitions).
#pragma once

namespace posttrain {

// Qwen3's chat_template with {% generation %} around each assistant turn's output.
const char* qwen3_training_chat_template();

}  // namespace posttrain
