"""The pages people use: the resident's code screen, the checkpoint scanner and the operator
console. Thin: static HTML and JavaScript that call the same JSON API as any other client; no SQL,
no keys. Browser libraries come from npm (``assets/package.json`` and its lockfile) and are served
from ``assets/node_modules``: ``npm ci --prefix src/yuekang/web/assets`` installs them."""
