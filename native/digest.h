#pragma once
#include <napi.h>
namespace token_shadow {
void InitDigest(Napi::Env env, Napi::Object exports);
}
