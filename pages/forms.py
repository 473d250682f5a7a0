from django import forms

from workers.signature import BadSignature, verify_challenge_signature

# Pubkeys, identities and auth keys are far shorter; anything longer is a paste gone wrong.
MAX_IDENTIFIER_LENGTH = 500


class OwnerForm(forms.Form):
    identifier = forms.CharField(
        max_length=MAX_IDENTIFIER_LENGTH,
        strip=True,
        label="Your worker's auth key, public key or user id",
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}),
    )

    def clean_identifier(self) -> str:
        value = self.cleaned_data["identifier"]
        if value == "user":
            # /worker/detail's `query=user` means "the caller's API key"; here, paste the key itself.
            raise forms.ValidationError("Paste the API key your workers connect with, not the word 'user'.")
        return value


class KeyProofForm(forms.Form):
    """Proof of holding a worker's identity key: its public key and its signature of
    the challenge this browser session was shown (`python -m workerbee sign-challenge`)."""

    pubkey = forms.CharField(max_length=64, strip=True, label="Public key")
    signature = forms.CharField(max_length=128, strip=True, label="Signature")

    def __init__(self, *args, challenge: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.challenge = challenge
        for field in self.fields.values():
            field.widget.attrs.update({"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"})

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if not self.challenge:
            raise forms.ValidationError("This page's challenge expired: sign the new one shown below.")
        try:
            verify_challenge_signature(pubkey=data["pubkey"], signature=data["signature"], challenge=self.challenge)
        except BadSignature as exc:
            raise forms.ValidationError(f"Not a valid signature of this challenge: {exc}.") from None
        return data
