import { Component, inject } from '@angular/core';

import { BuildInfo } from '../build-info';

@Component({
  selector: 'app-about-page',
  template: `
    <h1 data-testid="page-title">About</h1>
    <p data-testid="about-text">
      A small task board used as the example application of Conveyor's delivery pipeline.
      Tasks live in this browser's local storage.
    </p>
    <dl>
      <dt>Version</dt>
      <dd data-testid="about-version">{{ info.health()?.version ?? 'unknown' }}</dd>
      <dt>Commit</dt>
      <dd data-testid="about-commit">{{ info.health()?.commit ?? 'unknown' }}</dd>
      <dt>Environment</dt>
      <dd data-testid="about-environment">{{ info.config().environment || 'unknown' }}</dd>
    </dl>
  `,
})
export class AboutPage {
  protected readonly info = inject(BuildInfo);
}
