"""Server-rendered pages and reports (Jinja2 templates, inline SVG, no JavaScript)."""
