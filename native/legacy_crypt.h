#pragma once
#include <napi.h>
namespace token_shadow {
void InitCrypt(Napi::Env env, Napi::Object exports);
}
