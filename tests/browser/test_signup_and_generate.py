"""A person in a browser: sign up, create a project, generate with the local model, see the image.

Debian's headless Chromium driven through Selenium, against the live test server, with a real Celery
worker process running the job (`make test` installs chromium and chromium-driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from accounts.models import User
from billing.services import credits_summary
from tests.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.timeout(240)]



def test_a_new_user_signs_up_creates_a_project_generates_and_sees_the_image(
        browser: webdriver.Chrome, live_server: Any, celery_worker_process: WorkerProcess, catalog: None) -> None:
    wait = WebDriverWait(browser, 60)
    browser.get(f"{live_server.url}/accounts/signup/")
    browser.find_element(By.NAME, "email").send_keys("newcomer@example.com")
    browser.find_element(By.NAME, "password1").send_keys("a long enough passphrase")
    browser.find_element(By.NAME, "password2").send_keys("a long enough passphrase")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    form = wait.until(EC.presence_of_element_located((By.ID, "new-project-form")))
    form.find_element(By.NAME, "name").send_keys("Moodboard")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # Creating a project opens it.
    wait.until(EC.title_contains("Moodboard"))
    generate = wait.until(EC.presence_of_element_located((By.ID, "generate-form")))
    assert generate.get_attribute("data-model") == "local/sketch"
    generate.find_element(By.NAME, "inputs.prompt").send_keys("a quiet harbour at dawn")
    wait.until(EC.text_to_be_present_in_element((By.ID, "estimate"), "credit"))
    generate.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The job list polls while the job runs; when it ends the grid shows the new image.
    image = WebDriverWait(browser, 120).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#asset-grid .asset-tile img")),
        message=f"no image appeared; worker log:\n{celery_worker_process.log()[-3000:]}",
    )
    wait.until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", image))
    assert browser.find_element(By.CSS_SELECTOR, ".job[data-status]").get_attribute("data-status") == "succeeded"

    user = User.objects.get(email="newcomer@example.com")
    summary = credits_summary(user=user)
    assert summary.held == 0 and summary.balance < 500  # starter credits, minus what the sketch cost
    browser.save_screenshot(str(Path(celery_worker_process.log_path).parent / "studio.png"))
