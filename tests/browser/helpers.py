"""What a person does in the admin, as Selenium steps: log in, open a page, wait for what they would see.

Every wait is for a condition (WebDriverWait), never a fixed sleep.
"""
from __future__ import annotations

from collections.abc import Callable

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 15  # an upper bound for a condition on a loaded 2-core machine, never a sleep
PASSWORD = "browser-test-pw-0123"  # every persona's (tests/browser/conftest.py: make_persona)


def wait_until(browser: WebDriver, condition: Callable[[WebDriver], object], message: str = "") -> object:
    return WebDriverWait(browser, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message
    )


def open_page(browser: WebDriver, site, path: str) -> None:  # noqa: ANN001 - live_server
    browser.get(site.url + path)
    wait_until(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def login(browser: WebDriver, site, username: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    """Through the admin's login form, as a person does; lands on the dashboard."""
    open_page(browser, site, "/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait_until(browser, EC.presence_of_element_located((By.ID, "logout-form")), f"{username} was not logged in")


def element(browser: WebDriver, selector: str) -> WebElement:
    return wait_until(browser, EC.presence_of_element_located((By.CSS_SELECTOR, selector)), f"no {selector}")


def page_text(browser: WebDriver) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def messages(browser: WebDriver) -> list[str]:
    """The admin's messages shown on the page (success, warning, error)."""
    return [item.text for item in browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


def click_and_wait_for_new_page(browser: WebDriver, target: WebElement) -> None:
    """Click a link or submit button and wait until the next page has replaced this one."""
    old_html = browser.find_element(By.TAG_NAME, "html")
    target.click()
    wait_until(browser, EC.staleness_of(old_html), "the click led to no new page")
    wait_until(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def image_shown(browser: WebDriver, image: WebElement) -> bool:
    """The image was fetched and decoded (not a broken-image icon: a 403 or 404 would give one)."""
    return browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", image)


def session_cookie(browser: WebDriver) -> dict[str, str]:
    """The browser's cookies, for fetching a download with the same session."""
    return {cookie["name"]: cookie["value"] for cookie in browser.get_cookies()}
