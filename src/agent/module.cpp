// Placeholder so the library is never empty; remove once the module has sources.
