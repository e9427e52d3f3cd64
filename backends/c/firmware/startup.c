/*
 * Minimal Cortex-M startup for the snncc firmware test image (mps2-an386 under qemu).
 * Vector table, a reset handler that copies .data, zeroes .bss, opens the semihosting
 * stdio handles and exits with main()'s status (qemu then quits).
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void snncc_reset_handler(void);
void snncc_default_handler(void);

void snncc_default_handler(void)
{
    for (;;) {
    }
}

/* Initial stack pointer, then reset, NMI, HardFault, MemManage, BusFault, UsageFault. */
__attribute__((section(".isr_vector"), used)) void (*const snncc_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack,
    snncc_reset_handler,
    snncc_default_handler,
    snncc_default_handler,
    snncc_default_handler,
    snncc_default_handler,
    snncc_default_handler,
    0, 0, 0, 0,
    snncc_default_handler,
    snncc_default_handler,
    0,
    snncc_default_handler,
    snncc_default_handler,
};

void snncc_reset_handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; ++dst) {
        *dst = 0;
    }
    initialise_monitor_handles();
    exit(main());
}

/* Linked with -nostartfiles: newlib's init/fini hooks have nothing to do. */
void _init(void);
void _fini(void);
void _init(void)
{
}
void _fini(void)
{
}
