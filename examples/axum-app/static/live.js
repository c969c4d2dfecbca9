/*
 * The Axum App's live notices page: greets the signed-in user (the identity the app's own
 * token gave the connection), shows every notice sent to that user, newest first, and sends
 * notices to other users. When the connection is refused because the app's cookie is missing
 * or forged, the page says so and stops retrying. Needs thywill.js loaded first.
 */
(function () {
  'use strict';

  var APPLICATION_ID = 'notices';
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  class NoticesInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
      this.checking = false;
    }

    connecting() {
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
      this.ui.refused.hidden = true;
      this.ui.to.disabled = false;
      this.ui.textarea.disabled = false;
      this.ui.button.disabled = false;
    }

    disconnected() {
      this.showStatus('disconnected');
      this.disable();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.disable();
      this.checkSignIn();
    }

    /**
     * A WebSocket never tells the page why its handshake failed: ask the app's own API whether
     * the user is signed in. If not (401), the refusal was the authentication hook's: say so,
     * and stop retrying until the user signs in again.
     */
    checkSignIn() {
      if (this.checking) {
        return;
      }
      this.checking = true;
      var self = this;
      fetch('/api/me', { credentials: 'same-origin' })
        .then(function (response) {
          if (response.status === 401) {
            Thywill.disconnect();
            self.ui.who.textContent = '';
            self.ui.refused.hidden = false;
          }
        })
        .catch(function () {
          // The server is away: thywill.js goes on retrying.
        })
        .then(function () {
          self.checking = false;
        });
    }

    received(message) {
      var data = message.data || {};
      if (data.kind === 'hello') {
        this.ui.who.textContent = 'Hello, ' + data.name + '!';
        this.ui.who.setAttribute('data-user', data.user);
        if (this.ui.to.value === '') {
          this.ui.to.value = data.user;
        }
      } else if (data.kind === 'notice') {
        var div = document.createElement('div');
        div.className = 'notice-message';
        var from = document.createElement('span');
        from.className = 'from';
        from.textContent = data.fromName;
        var text = document.createElement('span');
        text.className = 'text';
        text.textContent = data.text;
        div.appendChild(from);
        div.appendChild(text);
        this.ui.notices.insertBefore(div, this.ui.notices.firstChild);
      }
    }

    /** Sends the box's text, if any, to the user named in the "to" box. */
    sendNotice() {
      var to = this.ui.to.value.trim();
      var text = this.ui.textarea.value;
      if (!Thywill.isConnected || to === '' || text === '') {
        return;
      }
      this.send({ to: to, text: text });
      this.ui.textarea.value = '';
      this.ui.textarea.focus();
    }

    disable() {
      this.ui.to.disabled = true;
      this.ui.textarea.disabled = true;
      this.ui.button.disabled = true;
    }

    showStatus(state) {
      this.ui.status.className = state;
      this.ui.status.textContent = STATUS_TEXT[state];
    }
  }

  function start() {
    var ui = {
      status: document.getElementById('status'),
      who: document.getElementById('who'),
      refused: document.getElementById('refused'),
      to: document.querySelector('#sender .to'),
      textarea: document.querySelector('#sender textarea'),
      button: document.querySelector('#sender button'),
      notices: document.getElementById('notices')
    };
    var notices = new NoticesInterface(ui);
    ui.button.addEventListener('click', function () {
      notices.sendNotice();
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
