"""Code generators and runtimes; each reads only the IR (integer IR for codegen)."""
