// The declaration is all this module provides (include/CLibFuzzer.h); libFuzzer itself comes with -sanitize=fuzzer.
#include "CLibFuzzer.h"
