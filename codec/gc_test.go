package codec

import "runtime"

func runtimeGC() { runtime.GC() }
