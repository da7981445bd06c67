"""Browser UI (placeholder until the web issue lands): expired page and sign-in stub."""
from flask import Blueprint, render_template

bp = Blueprint("web", __name__)


@bp.get("/users/sign_in")
def sign_in():
    """Show the sign-in page."""
    return render_template("errors/http.html", error=None)


def init_app(app):
    """Register the web routes."""
    app.register_blueprint(bp)
