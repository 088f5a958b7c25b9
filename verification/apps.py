from django.apps import AppConfig

# What the product is called on its screens: the admin's header, the front page (issue 11, item 2).
PRODUCT_NAME = "Face-verification access control"


class VerificationConfig(AppConfig):
    name = "verification"
    verbose_name = "Face verification"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib import admin

        from verification.login_throttle import ThrottledAdminAuthenticationForm

        # Failed admin logins are counted per user name and address in the shared cache (issue 9, item 8).
        admin.site.login_form = ThrottledAdminAuthenticationForm
