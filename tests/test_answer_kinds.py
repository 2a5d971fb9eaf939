"""The answer-type refusal rules added on fresh probe sets 4-6: what a question counts, how long,
labels that are not quantities, prices, and the kinds in answer_kinds.py (winner, first,
comparison, venue, opening hours). Fake embedder, tiny passages; each rule is shown to fire
and not to fire."""

from __future__ import annotations

from assistant.answer_kinds import kinds_asked
from assistant.compose import refusal_features, should_refuse
from assistant.names import asks_for_role
from assistant.terms import (asks_for_duration, asks_for_money, asks_for_quantity, counted, numbers, same_word,
                             states_duration, states_money)
from fakes import BagEmbedder, make_hits


def features(question: str, paragraphs: list[str], *, lang: str = "nb", doc_id: str = "ks-artikkel/seed.txt",
             hit_lang: str | None = None) -> dict[str, float]:
    hits = make_hits(paragraphs, doc_id=doc_id, lang=hit_lang or lang)
    return refusal_features(question, hits, BagEmbedder(), lang=lang)


def test_forms_of_one_word_and_compounds_on_it_match() -> None:
    assert same_word("søknaden", "søknad") and same_word("leverer", "leveres")
    assert same_word("virkedager", "dager") and same_word("administratortilgang", "tilgangen")
    assert same_word("vcpu-er", "vcpuer") and same_word("api-er", "api")  # an abbreviation's inflection
    assert not same_word("organisasjoner", "virksomheter") and not same_word("prosess", "prosjekt")
    assert not same_word("kommune", "kom")  # a head word needs four letters


def test_labels_and_codes_are_not_quantities() -> None:
    assert numbers("etter § 6 i forskriften, versjon 2 og v1.0") == set()
    assert numbers("urn:no:difi:profile:einnsyn:journalpost:ver1") == set()
    assert numbers("3. Send inn søknaden") == set()  # a list item's number
    assert numbers("Rådet har 13 virksomheter og tre møter") == {"13", "tre"}


def test_a_count_question_needs_a_number_beside_what_it_counts() -> None:
    assert counted("Hvor mange virkedager har kommunen på seg?") == ("virkedager",)
    assert counted("How many approved digital public goods are there?") == ("approved", "digital")
    assert counted("Hva er klagefristen?") == ()
    passages = ["Søknaden blir sperret i et døgn etter 24 timer.",
                "Innsynskrav skal besvares raskt, og kommunen svarer innen fem virkedager.",
                "Designsystemet har et produktråd med 13 virksomheter."]
    f = lambda q: features(q, passages)["quantity_unmet"]  # noqa: E731
    assert f("Hvor mange dager blir en påbegynt søknad lagret?") == 1.0  # "24 timer" counts hours
    assert f("Hvor mange virkedager har kommunen på seg til å svare på et innsynskrav?") == 0.0
    assert f("Hvor mange virksomheter sitter i produktrådet?") == 0.0
    assert f("Hvor mange ansatte har NAV?") == 1.0
    # the number must stand beside another of the question's words too: not "fem ansatte i teamet" for NAV
    assert features("Hvor mange ansatte har NAV?", ["Digdir har fem ansatte i teamet."])["quantity_unmet"] == 1.0
    code = ['POST /scopes HTTP/1.1 {"scope": "difitest:test2", "exp": 1584693557}',
            "POST /token grant_type=authorization_code&redirect_uri=https%3A%2F%2Fklient 3 klienter"]
    assert features("Hvor mange scopes kan en klient ha?", code)["quantity_unmet"] == 1.0
    # an FAQ's own question states nothing
    faq = ["Må vi etablere tre klienter, eller kan vi registrere flere uri-er på samme klient?"]
    assert features("Hvor mange klienter kan vi registrere?", faq)["quantity_unmet"] == 1.0
    # a question that asks a second thing falls back to any number near two of its words
    assert counted("Hvor mange bidrag ble levert, og hvor finner jeg dem?") == ()


def test_a_how_long_question_needs_a_length_of_time() -> None:
    assert asks_for_duration("Hvor lenge varer en økt?") and asks_for_duration("Hvor lang saksbehandlingstid har de?")
    assert asks_for_duration("How long does it take?") and not asks_for_duration("Hvor lang er teksten?")
    assert states_duration("tilgangen utløper etter en viss periode (typisk 8 timer)")
    assert states_duration("If more than a month goes by, you get a reply.")
    assert not states_duration("versjon 2 kom i 2024")
    passages = ["Rettigheten brukes med multifaktor, og tilgangen utløper etter en viss periode (typisk 8 timer).",
                "Designsystemet har 13 virksomheter i produktrådet."]
    assert features("Hvor lenge varer en midlertidig administratortilgang?", passages)["quantity_unmet"] == 0.0
    assert features("Hvor lenge varer en innloggingsøkt i ID-porten?", passages)["quantity_unmet"] == 1.0


def test_a_leading_when_clause_is_not_a_when_question() -> None:
    from assistant.terms import asks_for_date

    question = "Når en administrator aktiverer en privilegert rolle, hvor lenge varer tilgangen?"
    assert not asks_for_date(question) and asks_for_duration(question)
    assert asks_for_date("Når ble første versjon lansert?")
    assert asks_for_date("Når vi har søkt, når får vi svar?")  # the question after the clause asks when
    passages = ["Tilgangen utløper etter en viss periode (typisk 8 timer)."]
    f = features(question, passages)
    assert f["date_unmet"] == 0.0 and f["quantity_unmet"] == 0.0


def test_a_when_question_is_near_a_sentence_sharing_one_of_its_words() -> None:
    passages = ["Pantera var et amerikansk heavy metal-band fra Texas.", "Bandet ble dannet i 1981."]
    f = features("Når ble Pantera dannet?", passages)
    assert f["date_unmet"] == 0.0 and f["quantity_unmet"] == 0.0
    passages = ["The Beatles var et britisk band.", "Det store gjennombruddet i Storbritannia kom i 1963."]
    assert features("Når ble The Beatles ordentlig kjent i Storbritannia?", passages)["date_unmet"] == 0.0
    # a sentence that shares none of its words is not near; a version number is no point in time
    assert features("Når ble Pantera oppløst?", ["Albumet kom ut i 1990."])["date_unmet"] == 1.0
    passages = ["På et tidspunkt låste vi versjon 0.63 av Designsystemet.", "Versjon 1.0.0 har nye komponenter."]
    assert features("Når kommer versjon 2 av Designsystemet?", passages)["date_unmet"] == 1.0


def test_price_questions_and_free_answers() -> None:
    assert asks_for_money("What is the annual fee for a municipality to connect to eFormidling?")
    assert asks_for_money("Hva betaler en kommune per innlogging?")
    assert not asks_for_money("Hva skjer hvis jeg ikke kan betale husleien?")
    assert not asks_for_money("Hvor mange priser deles ut?")
    assert not asks_for_money("Hvilken pris mottok Kaare Norum i 1972?")  # an award
    assert asks_for_money("Hva er årsprisen for en kommune som vil bruke eFormidling?")  # a price in a compound
    assert not asks_for_money("Hva er Innbyggerprisen?")
    assert asks_for_money("Hva er prisen per brev når kommunen sender post?")
    assert states_money("Using ELMA is free of charge for approved access points.") and states_money("Det er gratis.")
    assert not states_money("ELMA is used by access points.")
    # a yes/no question asks for no number ...
    assert not asks_for_quantity("Does it cost anything for an access point to use ELMA?")
    assert asks_for_quantity("How much does it cost for an access point to use ELMA?")
    free = features("Does it cost anything for an access point to use ELMA?",
                    ["Using ELMA is free of charge for approved access points."], lang="en")
    assert free["quantity_unmet"] == 0.0 and free["money_unmet"] == 0.0
    # ... and a price question without a price near its words is refused
    unmet = features("Hva betaler en kommune per innlogging i ID-porten?",
                     ["Kommunen kobler tjenestene sine til ID-porten for innlogging."])
    assert unmet["money_unmet"] == 1.0 and should_refuse(unmet, refuse_below=-1)


def test_a_name_may_be_the_documents_source() -> None:
    passages = ["Kim representerer unge mellom 16-24 år som har ungdomsskole som høyest fullførte utdanning."]
    question = "Hvilken brukergruppe representerer Kim i Digdirs beskrivelse?"
    assert features(question, passages, doc_id="digdir__designsystemet/personas.mdx")["name_missing"] == 0.0
    assert features(question, passages, doc_id="ks-no__workshop-ai/personas.md")["name_missing"] == 1.0


def test_a_contact_person_is_a_role() -> None:
    question = "Hvem i KS er kontaktperson for Fiks Arkiv-spesifikasjonen?"
    assert "kontaktperson" in asks_for_role(question)
    assert "contact person" in asks_for_role("Who at Digdir is the contact person for ID-porten?")
    without = ["Fiks Arkiv-spesifikasjonen forvaltes av KS Digital, og Kari Nordmann har skrevet wikien."]
    assert features(question, without)["role_unmet"] == 1.0
    assert features(question, ["Kontaktperson for Fiks Arkiv i KS er Kari Nordmann."])["role_unmet"] == 0.0


def test_uptime_asks_for_a_number() -> None:
    assert asks_for_quantity("What uptime does Digdir guarantee for ID-porten logins?")
    assert asks_for_quantity("Hvilken oppetid har ID-porten?")


def test_the_head_of_an_organisation_is_not_a_department_director() -> None:
    question = "Who is the current director general of the Norwegian Digitalisation Agency (Digdir)?"
    assert "director" not in asks_for_role(question) and "director general" in asks_for_role(question)
    assert "director" in asks_for_role("Who is the director of Digdir?")
    passages = ["Andreas Rafaelsen, director of the department at Digdir, says the work matters."]
    assert features(question, passages, lang="en")["role_unmet"] == 1.0
    assert features("Who is the director of Digdir?", passages, lang="en")["role_unmet"] == 0.0


def test_kinds_asked() -> None:
    def names(q: str) -> list[str]:
        return [k.name for k in kinds_asked(q)]

    assert names("Hvilket team vant Hackathonprisen 2026?") == ["winner"]
    assert names("Which municipality was the first in Norway to adopt Designsystemet?") == ["first"]
    assert names("Hvilken e-ID brukes mest i ID-porten, BankID eller MinID?") == ["comparison"]
    assert names("Hvor blir KS' hackathon arrangert?") == ["venue"]
    assert names("Hva er åpningstidene til NAV-kontoret?") == ["opening_hours"]
    assert names("Hvilken paragraf i sosialtjenesteloven gir hjemmel for vilkår?") == ["legal_reference"]
    assert names("Is it cheaper to run workloads in Norway West than in Norway East?") == ["comparison"]
    # none: where to send something, "vant til" (used to), a superlative without options
    assert names("Hvor skal en innbygger sende klagen?") == []
    assert names("Er brukerne vant til begrepet?") == []
    assert names("Hva er det viktigste rådet?") == []
    # the first step of a procedure is not "who was first"
    assert names("Arkivet får ikke e-postene. Hva er det første vi bør sjekke?") == []
    assert names("What is the first thing we should check?") == []


def test_each_kind_is_refused_without_its_answer_and_answered_with_it() -> None:
    cases = [
        ("Hvilket team vant Innbyggerprisen på hackathonet?",
         "Tre priser deles ut på hackathonet fredag: Innbyggerprisen og Hackathonprisen.",
         "Innbyggerprisen på hackathonet gikk til team Trondheim."),
        ("Hvilken kommune var den første til å ta i bruk Designsystemet?",
         "Mange kommuner har tatt i bruk Designsystemet.",
         "Bergen var den første kommunen som tok i bruk Designsystemet."),
        ("Hvilken e-ID brukes mest i ID-porten, BankID eller MinID?",
         "I ID-porten kan innbyggeren logge inn med BankID eller MinID.",
         "BankID brukes mest i ID-porten, foran MinID."),
        ("Hvor blir hackathonet arrangert?",
         "Hackathonet arrangeres for kommunale utviklere.",
         "Hackathonet arrangeres i Trondheim."),
        ("Hvilken paragraf i sosialtjenesteloven gir NAV plikt til å finne midlertidig botilbud?",
         "NAV skal hjelpe deg med å finne et midlertidig botilbud.",
         "Plikten til å finne midlertidig botilbud følger av sosialtjenesteloven § 27."),
        ("Hva er åpningstidene på NAV-kontoret?",
         "Du kan møte opp på NAV-kontoret uten avtale.",
         "NAV-kontoret har åpent fra kl. 9 til 15 på hverdager."),
        ("I hvilken versjon blir slett-knappen i ELMA fjernet?",
         "Slett-knappen i ELMA står på feil sted i visningen.",
         "Slett-knappen i ELMA fjernes i versjon 2.4."),
    ]
    for question, without, with_it in cases:
        assert features(question, [without])["kind_unmet"] == 1.0, question
        assert features(question, [with_it])["kind_unmet"] == 0.0, question
    # a venue must be a place the question did not name
    assert features("Where is the Designsystemet launch held?", ["The launch is held in Designsystemet."],
                    lang="en")["kind_unmet"] == 1.0
    # across languages any sentence of the top passages may give the kind
    assert features("Which team won the Innbyggerprisen?", ["Innbyggerprisen gikk til team Trondheim."],
                    lang="en", hit_lang="nb")["kind_unmet"] == 0.0
