"""Reference systems that stand in for what yuekang talks to: partner health-code systems and
the identity registry. They run in development, in the tests and in interop drills, and are not
part of the service's wheel (pyproject.toml builds ``src/yuekang`` only), so a production image
does not ship test doubles."""
