/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, which Debian 12's wine 8.0 lacks: every
 * Go >= 1.22 Windows binary imports its ProcessPrng (Windows 10 and later have it), so without
 * this DLL beside the exe, wine refuses to start ctseg.exe. It is built by the release test and
 * never goes into a release archive.
 *
 * ProcessPrng fills the buffer with random bytes and always succeeds on Windows; here it calls
 * RtlGenRandom (advapi32's SystemFunction036), which takes a ULONG length.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
